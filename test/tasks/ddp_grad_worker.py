"""One rank of the DDP gradient test (run as a real process by test_ddp.py).

``python ddp_grad_worker.py --rank R --world_size W --port P --token_dir D --batch b.pt --out g.pt``

Builds the tiny UALM model with a fixed seed, wraps it in ``DistributedDataParallel`` (gloo, CPU),
runs this rank's share of the batch and back-propagates the loss exactly as ESPnet's Trainer does
under DDP (``espnet2/train/trainer.py``: ``loss * weight``, ``recursive_average`` all-reduces the
weights, divide by their sum, multiply by the world size because DDP averages gradients), then
saves every parameter's gradient (and the loss) to ``--out``.
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from espnet2.torch_utils.recursive_op import recursive_average

sys.path.insert(0, str(Path(__file__).parent))
from ddp_model import make_model  # noqa: E402

from ualm_tk.tokens.layout import TokenLayout  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    for a in ("--rank", "--world_size", "--port"):
        p.add_argument(a, type=int, required=True)
    for a in ("--token_dir", "--batch", "--out"):
        p.add_argument(a, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                            world_size=args.world_size)
    model = make_model(TokenLayout.load(args.token_dir))
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    batch = torch.load(args.batch)
    loss, stats, weight = ddp(**batch)
    # ESPnet Trainer.train_one_epoch, distributed branch
    loss = (loss * weight.type(loss.dtype)).sum()
    stats, weight = recursive_average(stats, weight, True)
    loss = loss / weight * dist.get_world_size()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save(dict(grads=grads, mean_loss=float(stats["loss"]), weight=float(weight)), args.out)
    dist.barrier()  # teardown without a barrier aborts now and then (ENVIRONMENT.md)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
