"""Plain torch training loop of the toolkit's own scorers (small models, cached log-mels).

Resumable: ``<out>/checkpoint.pth`` (model, optimizer, scheduler, epoch, best validation loss
and its weights, torch RNG state) is written atomically after every epoch and picked up on the
next run. Batches of an epoch are a permutation seeded by ``seed + epoch`` (length-bucketed:
sorted by length within windows of 16 batches, then the batches shuffled), so a resumed run sees
the same batches as an uninterrupted one. The final component directory (``component.yaml`` +
``model.pth``) holds the weights of the epoch with the lowest validation loss.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from ualm_tk.scoring.models.corpus import Clip, pad_logmels
from ualm_tk.scoring.models.trainable import TrainableScorer

logger = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pth"


BUCKET_BATCHES = 16  # length bucketing: sort within windows of this many batches


def _batches(n: int, batch_size: int, seed: int, shuffle: bool,
             lengths: Optional[Sequence[int]] = None) -> List[List[int]]:
    """Index batches; shuffled ones with ``lengths`` are length-bucketed (less padding, same randomness)."""
    if not shuffle:
        order = list(range(n))
        return [order[i: i + batch_size] for i in range(0, n, batch_size)]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist()
    if lengths is None:
        return [order[i: i + batch_size] for i in range(0, n, batch_size)]
    win = batch_size * BUCKET_BATCHES
    out = []
    for w in range(0, n, win):
        chunk = sorted(order[w: w + win], key=lambda i: lengths[i])
        out += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def _run_batch(model: TrainableScorer, clips: Sequence[Clip], feats: Dict[str, torch.Tensor], idx: List[int]):
    sel = [clips[i] for i in idx]
    x, lengths = pad_logmels([feats[c.key] for c in sel])
    dev = next(model.parameters()).device
    return model.loss(x.to(dev), lengths.to(dev), sel)


@torch.no_grad()
def validate(model: TrainableScorer, clips: Sequence[Clip], feats: Dict[str, torch.Tensor],
             batch_size: int) -> Dict[str, float]:
    """Clip-weighted mean of the loss stats over ``clips`` (eval mode)."""
    model.eval()
    tot: Dict[str, float] = {}
    for idx in _batches(len(clips), batch_size, 0, shuffle=False):
        _, stats = _run_batch(model, clips, feats, idx)
        for k, v in stats.items():
            tot[k] = tot.get(k, 0.0) + v * len(idx)
    return {k: v / len(clips) for k, v in tot.items()}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(model: TrainableScorer, train_clips: Sequence[Clip], train_feats: Dict[str, torch.Tensor],
          valid_clips: Sequence[Clip], valid_feats: Dict[str, torch.Tensor], out_dir: Path, *,
          batch_size: int = 32, max_epochs: int = 10, lr: float = 1e-3, weight_decay: float = 0.01,
          warmup_steps: int = 50, grad_clip: float = 5.0, seed: int = 0, resume: bool = True) -> Dict[str, Any]:
    """Train ``model`` in place; return a summary (per-epoch stats, best epoch, wall time)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = math.ceil(len(train_clips) / batch_size)
    total = steps_per_epoch * max_epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    train_lengths = [int(train_feats[c.key].shape[-1]) for c in train_clips]
    ckpt_path = out_dir / CHECKPOINT
    start_epoch, history, best = 0, [], {"loss": float("inf"), "epoch": -1, "state": None}
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, history, best = ck["epoch"], ck["history"], ck["best"]
        torch.set_rng_state(ck["rng"])
        logger.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    else:
        torch.manual_seed(seed)
    t0 = time.time()
    for epoch in range(start_epoch, max_epochs):
        model.train()
        sums: Dict[str, float] = {}
        batches = _batches(len(train_clips), batch_size, seed + epoch, shuffle=True, lengths=train_lengths)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{max_epochs}", mininterval=10)
        for idx in bar:
            loss, stats = _run_batch(model, train_clips, train_feats, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", refresh=False)
        train_stats = {k: v / len(train_clips) for k, v in sums.items()}
        valid_stats = validate(model, valid_clips, valid_feats, batch_size)
        history.append({"epoch": epoch + 1, "train": train_stats, "valid": valid_stats,
                        "lr": sched.get_last_lr()[0]})
        logger.info("epoch %d/%d train %s | valid %s", epoch + 1, max_epochs,
                    " ".join(f"{k}={v:.4f}" for k, v in train_stats.items()),
                    " ".join(f"{k}={v:.4f}" for k, v in valid_stats.items()))
        if valid_stats["loss"] < best["loss"]:
            best = {"loss": valid_stats["loss"], "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                      "epoch": epoch + 1, "history": history, "best": best, "rng": torch.get_rng_state()},
                     ckpt_path)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return {"history": history, "best_epoch": best["epoch"], "best_valid_loss": best["loss"],
            "wall_s_this_run": time.time() - t0, "steps_per_epoch": steps_per_epoch}
