#!/usr/bin/env python
"""LM training speed on real data.json files: length-bucketed batches against unbucketed ones.

Builds the model, optimizer and dataset exactly as ``python -m ualm_tk.tasks.ualm --config CONFIG``
does (UALMTask's parser, ``build_model``, ``build_optimizers``, ``build_dataset``), takes the first
``--warmup + --steps`` batches of the training iterator (``LMIterFactory``: length bucketing within
``batch_bins`` positions, at most ``batch_size`` rows) and times full training steps (forward,
backward, grad-norm clip, optimizer step) on CPU. Contenders, each with its own copy of the same
initial model, run their steps interleaved (a, b, a, b, ...) so that load changes on a shared
machine hit them alike:

* ``bucketed``  : the real iterator's batches;
* ``shuffled``  : the SAME examples, randomly regrouped into batches with the same row counts (no bucketing);
* ``batch1``    : the same examples one row per step (optional, ``--modes``);
* ``bf16``      : the real iterator's batches with ``model_conf.cpu_bf16`` on: the forward under
  ``torch.autocast("cpu", bfloat16)``, weights and optimizer in float32 (optional, ``--modes``).
  Its loss after the timed steps is printed beside ``bucketed``'s (same batches, same initial model). With
  ``bf16`` among the modes every other contender runs in float32, whatever the config's ``cpu_bf16`` (``auto``)
  picked on this CPU; the table's header says whether the CPU computes bfloat16 natively.
* ``allpos``    : the real iterator's batches with every position through the output head and its
  cross-entropy (``UALMModel._stream_ce(all_positions=True)``), the way the model scored before it
  restricted the head to loss-bearing positions; same losses as ``bucketed`` (optional, ``--modes``).

Printed per contender: step time, padded positions/s (B x S, what the compute costs), real
positions/s (non-pad), loss-bearing positions/s (positions with any loss weight), padding share and
the ratio to ``bucketed``; then the process's peak RSS.

    python benchmarks/train_speed.py                             # mini recipe: conf/train_ualm.yaml + dump/
    python benchmarks/train_speed.py --config CONF --dump_dir DUMP --token_dir TOKENS --steps 20
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import resource
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ualm_tk.data.lm_dataset import LMIterFactory, collate
from ualm_tk.tasks import dry_run
from ualm_tk.tasks.ualm import UALMTask
from ualm_tk.utils.cpu_precision import cpu_has_native_bf16

logger = logging.getLogger("train_speed")
RECIPE = Path("egs2/mini_ualm/ualm1")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe_dir", default=str(RECIPE),
                   help="directory the data.json audio paths are relative to; the run happens there")
    p.add_argument("--config", default=None, help="default: RECIPE_DIR/conf/train_ualm.yaml")
    p.add_argument("--dump_dir", default=None, help="holds <task>/<set>/data.json (default: RECIPE_DIR/dump)")
    p.add_argument("--token_dir", default=None, help="default: RECIPE_DIR/data/token_list")
    p.add_argument("--set", default="train")
    p.add_argument("--tasks", default=None,
                   help="comma-separated tasks (default: the config's task_factors keys, else every task in dump_dir)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override (dotted)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per contender")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first")
    p.add_argument("--modes", default="bucketed,shuffled", help="contenders: bucketed, shuffled, batch1, bf16, allpos")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


def data_triples(dump_dir: Path, set_name: str, tasks: List[str]) -> List[Tuple[str, str, str]]:
    out = []
    for t in tasks:
        p = dump_dir / t / set_name / "data.json"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no data.json for task {t!r} (stage 4 writes it)")
        out.append((str(p), t, "data_json"))
    return out


def regroup(batches: List[List], rng: np.random.Generator) -> List[List]:
    """The same examples, shuffled across batches, in batches with the same row counts."""
    flat = [x for b in batches for x in b]
    order = rng.permutation(len(flat))
    out, i = [], 0
    for b in batches:
        out.append([flat[j] for j in order[i : i + len(b)]])
        i += len(b)
    return out


def batch_counts(batch: Dict[str, torch.Tensor]) -> Dict[str, int]:
    B, S, _ = batch["tokens"].shape
    m = batch["loss_mask"][:, 1:]  # position s predicts s+1
    return dict(padded=B * S, real=int(batch["lengths"].sum()), loss=int((m.sum(-1) > 0).sum()), rows=B)


class Contender:
    def __init__(self, name: str, model: torch.nn.Module, args: argparse.Namespace, dataset, batches: List[List]):
        self.name, self.model, self.dataset, self.batches = name, model, dataset, batches
        self.optimizer = UALMTask.build_optimizers(args, model=model)[0]
        self.grad_clip = float(args.grad_clip)
        self.times: List[float] = []
        self.counts: List[Dict[str, int]] = []
        self.losses: List[float] = []

    def step(self, i: int, timed: bool) -> None:
        batch = collate([self.dataset[ix] for ix in self.batches[i]])[1]  # data loading is not timed
        t0 = time.perf_counter()
        loss, _, _ = self.model(**batch)
        loss.backward()
        self.losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if timed:
            self.times.append(time.perf_counter() - t0)
            self.counts.append(batch_counts(batch))

    def summary(self) -> Dict[str, float]:
        t = sum(self.times)
        tot = {k: sum(c[k] for c in self.counts) for k in self.counts[0]}
        return dict(step_s=t / len(self.times), rows=tot["rows"] / len(self.times), padded_ps=tot["padded"] / t,
                    real_ps=tot["real"] / t, loss_ps=tot["loss"] / t, pad_share=1 - tot["real"] / tot["padded"],
                    examples_ps=tot["rows"] / t, last_loss=float(np.mean(self.losses[-3:])))


def main(cmd=None) -> None:
    a = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(a.threads)
    rd = Path(a.recipe_dir).resolve()
    a.config = str(Path(a.config).resolve()) if a.config else str(rd / "conf/train_ualm.yaml")
    a.dump_dir = str(Path(a.dump_dir).resolve()) if a.dump_dir else str(rd / "dump")
    a.token_dir = str(Path(a.token_dir).resolve()) if a.token_dir else str(rd / "data/token_list")
    os.chdir(rd)
    conf = dry_run.load_config(a.config, a.override)
    args = dry_run.parse_task_args(conf, a.token_dir)
    args.seed = a.seed
    tasks = a.tasks.split(",") if a.tasks else sorted(args.task_factors or {}) or sorted(
        d.name for d in Path(a.dump_dir).iterdir() if (d / a.set / "data.json").is_file())
    dataset = UALMTask.build_dataset(args, data_triples(Path(a.dump_dir), a.set, tasks), train=True)
    factory = LMIterFactory(dataset, batch_bins=args.batch_bins, max_batch_size=args.batch_size, seed=a.seed)
    n = a.warmup + a.steps
    index_batches = factory.round_batches(1)[:n]
    if len(index_batches) < n:
        raise ValueError(f"round 1 has only {len(index_batches)} batches; ask for fewer --warmup/--steps")
    rng = np.random.default_rng(a.seed)
    groupings = {"bucketed": index_batches, "shuffled": regroup(index_batches, rng)}
    modes = a.modes.split(",")
    for same in ("bf16", "allpos"):
        if same in modes:
            groupings[same] = index_batches
    if "batch1" in modes:  # one row per step over the timed examples (the warm-up uses the first rows)
        flat = [x for b in index_batches[a.warmup:] for x in b]
        groupings["batch1"] = [[x] for x in flat[: a.warmup]] + [[x] for x in flat]
    unknown = set(modes) - set(groupings)
    if unknown:
        raise ValueError(f"--modes: unknown {sorted(unknown)} (bucketed, shuffled, batch1, bf16, allpos)")
    torch.manual_seed(a.seed)
    model0 = UALMTask.build_model(args).train()
    nparam = sum(p.numel() for p in model0.parameters())
    contenders = []
    for m in modes:
        model = copy.deepcopy(model0)
        if "bf16" in modes:  # bf16 against float32, whatever the config's cpu_bf16 (auto) chose on this CPU
            model.cpu_bf16 = m == "bf16"
        if m == "allpos":  # the instance attribute shadows the method for this copy only
            model._stream_ce = functools.partial(model._stream_ce, all_positions=True)
        contenders.append(Contender(m, model, args, dataset, groupings[m]))
    del model0
    longest = max(len(c.batches) for c in contenders)
    for i in range(longest):  # interleaved: a, b, a, b, ...
        for c in contenders:
            if i < len(c.batches):
                c.step(i, timed=i >= a.warmup)
        if i % 5 == 0:
            logger.info("step %d/%d", i + 1, longest)
    rows = {c.name: c.summary() for c in contenders}
    base = rows.get("bucketed") or next(iter(rows.values()))
    print(f"\nTraining speed, {a.config} ({nparam / 1e6:.1f} M parameters), tasks {','.join(tasks)} ({a.set}), "
          f"{a.threads} threads, {a.steps} timed steps after {a.warmup} warm-up (batch1: one step per timed example), "
          f"interleaved; load average at the end: {os.getloadavg()[0]:.1f}; native bfloat16 on this CPU: "
          f"{'yes' if cpu_has_native_bf16() else 'no (bf16 is emulated)'}; cpu_bf16 per contender: "
          f"{', '.join(f'{c.name} {c.model.cpu_bf16}' for c in contenders)}")
    head = (f"{'contender':>9} {'rows/step':>9} {'s/step':>7} {'padded pos/s':>12} {'real pos/s':>10} "
            f"{'loss pos/s':>10} {'examples/s':>10} {'padding':>7} {'real pos/s vs bucketed':>22} {'loss (last 3)':>13}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:>9} {r['rows']:>9.1f} {r['step_s']:>7.3f} {r['padded_ps']:>12.0f} {r['real_ps']:>10.0f} "
              f"{r['loss_ps']:>10.0f} {r['examples_ps']:>10.1f} {100 * r['pad_share']:>6.1f}% "
              f"{r['real_ps'] / base['real_ps']:>22.2f} {r['last_loss']:>13.3f}")
    print("loss (last 3): mean training loss of the last 3 steps (contenders see different batches unless "
          "they share a grouping: bucketed, bf16 and allpos do);")
    print("padded = B x S positions computed; real = non-pad positions; loss = positions with loss weight > 0 "
          "(one audio frame = one position: its K tokens share it)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
          f"(all contenders together: dataset index, {len(contenders)} model + optimizer copies, one batch at a time)")


if __name__ == "__main__":
    main()
