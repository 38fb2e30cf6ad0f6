"""Data-parallel training on CPU: 2 real processes over torch.distributed gloo.

What ESPnet's Trainer does under DDP (espnet2/train/trainer.py, distributed branch): each rank
computes its own ``loss_r = sum(mask*CE)/sum(mask)`` and weight ``B_r`` (rows), multiplies
``loss_r * B_r``, all-reduces the weights, divides by ``sum_r B_r`` and multiplies by the world
size; DDP then averages the gradients. The update is therefore the gradient of
``sum_r (B_r / sum B) * loss_r`` -- ranks are weighted by ROWS, not by loss-bearing positions. It
equals the full-batch gradient of ``sum(mask*CE)/sum(mask)`` exactly when every rank carries the
same share of rows and of loss positions (e.g. equal rows and equal mask sums); otherwise it is a
re-weighting of the same per-rank losses, which these tests pin down as well.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ualm_tk.data.lm_dataset import LMDataset, TaskSource, collate
from ualm_tk.patterns import build_pattern

sys.path.insert(0, str(Path(__file__).parent))
from ddp_model import make_model  # noqa: E402

HERE = Path(__file__).parent
TINY = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def examples(c):
    ds = LMDataset([TaskSource(str(p), t) for t, p in c["data"].items()], c["layout"], build_pattern("delay"),
                   train=False)  # train=False: no CFG dropout, the batch is deterministic
    return [ds[(i, 0)] for i in range(len(ds))]


def mask_sum(e) -> float:
    return float(e["loss_mask"][1:].sum())  # position s predicts s+1: the model scores mask[1:]


def equal_weight_split(exs):
    """Per task, two examples with the same mask sum (different lengths where possible): one per rank."""
    ranks = ([], [])
    for task in sorted({e["task"] for e in exs}):
        cand = [e for e in exs if e["task"] == task]
        pairs = [(a, b) for i, a in enumerate(cand) for b in cand[i + 1:] if mask_sum(a) == mask_sum(b)]
        pairs.sort(key=lambda ab: -abs(len(ab[0]["tokens"]) - len(ab[1]["tokens"])))
        ranks[0].append(pairs[0][0])
        ranks[1].append(pairs[0][1])
    return ranks


def run_ranks(c, parts, tmp_path, env):
    port, procs = free_port(), []
    for r, part in enumerate(parts):
        torch.save(collate(part)[1], tmp_path / f"batch{r}.pt")
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "ddp_grad_worker.py"), "--rank", str(r), "--world_size", str(len(parts)),
             "--port", str(port), "--token_dir", str(c["token_dir"]), "--batch", str(tmp_path / f"batch{r}.pt"),
             "--out", str(tmp_path / f"grads{r}.pt")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    return [torch.load(tmp_path / f"grads{r}.pt") for r in range(len(parts))]


def grads_of(model, batch):
    model.zero_grad(set_to_none=True)
    loss, _, weight = model(**batch)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}, float(weight)


def assert_same_grads(got, want):
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=2e-7, msg=lambda m: f"{n}: {m}")


def test_ddp_gradients_equal_single_process(lm_corpus, tmp_path, subprocess_env):
    exs = examples(lm_corpus)
    r0, r1 = equal_weight_split(exs)
    assert len(r0) == len(r1) == 4 and sum(map(mask_sum, r0)) == sum(map(mask_sum, r1))
    assert any(e["audio"] for e in r0) and any(e["audio"] for e in r1)  # the audio encoder is in the graph
    env = dict(subprocess_env, OMP_NUM_THREADS="1")
    model = make_model(lm_corpus["layout"])
    full, _ = grads_of(model, collate(r0 + r1)[1])
    assert any("audio_encoder" in n for n in full) and any("adapter" in n for n in full)

    # 1. equal rows and equal loss positions per rank: DDP == one process on the full batch
    (tmp_path / "eq").mkdir()
    got = run_ranks(lm_corpus, [r0, r1], tmp_path / "eq", env)
    for g in got:  # every rank ends with the same, all-reduced gradient
        assert_same_grads(g["grads"], full)

    # 2. unequal split (1 row vs 3 rows, different mask sums): DDP gives the row-weighted combination of the
    #    per-rank losses, which is NOT the full-batch gradient
    u0, u1 = [r0[0]], [r1[1], r1[2], r0[3]]
    assert mask_sum(u0[0]) / 1 != sum(map(mask_sum, u1)) / 3
    (tmp_path / "uneq").mkdir()
    got = run_ranks(lm_corpus, [u0, u1], tmp_path / "uneq", env)
    g0, b0 = grads_of(model, collate(u0)[1])
    g1, b1 = grads_of(model, collate(u1)[1])
    weighted = {n: (b0 * g0[n] + b1 * g1[n]) / (b0 + b1) for n in g0.keys() | g1.keys()
                if n in g0 and n in g1}
    weighted.update({n: b1 * g1[n] / (b0 + b1) for n in g1.keys() - g0.keys()})  # audio encoder: rank 1 only
    weighted.update({n: b0 * g0[n] / (b0 + b1) for n in g0.keys() - g1.keys()})
    for g in got:
        assert g["weight"] == b0 + b1 == 4
        assert_same_grads(g["grads"], weighted)
    full_u, _ = grads_of(model, collate(u0 + u1)[1])
    diff = max(float((full_u[n] - weighted[n]).abs().max()) for n in full_u)
    assert diff > 1e-5, "row weighting and mask weighting should differ on this split"


def test_espnet_trainer_runs_two_gloo_ranks(lm_corpus, tmp_path, repo_root, subprocess_env):
    """The real recipe path: `python -m ualm_tk.tasks.ualm` started once per rank (as srun/torchrun would),
    --ngpu 0 --dist_backend gloo; after 2 steps both ranks hold identical parameters that moved."""
    port = free_port()
    data = []
    for t, p in lm_corpus["data"].items():
        data += ["--train_data_path_and_name_and_type", f"{p},{t},data_json",
                 "--valid_data_path_and_name_and_type", f"{p},{t},data_json"]
    procs = []
    for r in range(2):
        args = ["--config", str(repo_root / TINY), "--token_dir", str(lm_corpus["token_dir"]),
                "--output_dir", str(tmp_path / "exp"), "--audio_encoder_conf", "{size: tiny, dropout: 0.0}",
                "--seed", "3", "--ngpu", "0", "--multiprocessing_distributed", "false", "--dist_backend", "gloo",
                "--dist_world_size", "2", "--dist_rank", str(r), "--dist_master_addr", "127.0.0.1",
                "--dist_master_port", str(port), "--unused_parameters", "true", "--max_epoch", "1",
                "--num_iters_per_epoch", "2", "--batch_bins", "400", "--batch_size", "4"] + data
        env = dict(subprocess_env, OMP_NUM_THREADS="1", UALM_DUMP_PARAMS=str(tmp_path / f"params{r}.pt"))
        procs.append(subprocess.Popen([sys.executable, str(HERE / "ddp_trainer_worker.py")] + args, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        outs.append(out)
        assert p.returncode == 0, out
    p0, p1 = (torch.load(tmp_path / f"params{r}.pt") for r in range(2))
    assert p0["steps"] == p1["steps"] == 2
    for n in p0["params"]:
        torch.testing.assert_close(p0["params"][n], p1["params"][n], rtol=0, atol=0, msg=lambda m: f"{n}: {m}")
        torch.testing.assert_close(p0["init"][n], p1["init"][n], rtol=0, atol=0)  # DDP broadcast rank 0's init
    moved = [n for n in p0["params"] if not torch.equal(p0["init"][n], p0["params"][n])]
    assert len(moved) > 0.9 * len(p0["params"]), "training should move (almost) every parameter"
    cfg = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert cfg["dist_world_size"] == 2 and cfg["dist_backend"] == "gloo"
    assert (tmp_path / "exp" / "checkpoint.pth").is_file()  # rank 0 saved the checkpoint
