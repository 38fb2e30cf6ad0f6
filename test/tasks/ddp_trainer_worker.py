"""One rank of ``python -m ualm_tk.tasks.ualm`` for test_ddp.py, with a Trainer that records parameters.

ESPnet's Trainer saves checkpoints on rank 0 only; to compare the ranks, this runs the task's own
``main`` with ``UALMTask.trainer`` replaced by a subclass whose ``run`` saves, to the file named by
``$UALM_DUMP_PARAMS``, the parameters before and after training and the optimizer step count.
"""
import os
import sys

import torch
from espnet2.train.trainer import Trainer

from ualm_tk.tasks.ualm import UALMTask


class RecordingTrainer(Trainer):
    @classmethod
    def run(cls, model, optimizers, **kwargs):
        init = {n: p.detach().clone() for n, p in model.named_parameters()}
        super().run(model=model, optimizers=optimizers, **kwargs)
        steps = {int(s["step"]) for s in optimizers[0].state.values()}
        torch.save(dict(init=init, params={n: p.detach().clone() for n, p in model.named_parameters()},
                        steps=max(steps)), os.environ["UALM_DUMP_PARAMS"])


if __name__ == "__main__":
    UALMTask.trainer = RecordingTrainer
    UALMTask.main(cmd=sys.argv[1:])
