"""LM training data: several tasks' ``data.json`` blended by token share, CFG dropout, bucketed batches.

* :class:`TaskSource` names one ``data.json``, its task and its up-sampling factor ``f``: each
  round (a pass over the blend) holds every example ``floor(f)`` times plus a seeded random
  ``frac(f)`` share of them once more, so a task's token share is ``f·tokens / Σ f·tokens``;
  the realised shares are logged for every round.
* :class:`LMDataset` renders one example (``tokens [S,K]``, ``loss_mask [S,K]`` through
  :func:`~ualm_tk.data.task_templates.render_example`; codes read with kaldiio from the
  references in data.json; user-side audio read from its wav path at ``sample_rate``). In
  training, a generation example is replaced by its unconditional form
  (:func:`~ualm_tk.data.task_templates.make_unconditional`: caption -> pad, loss on audio only)
  with probability ``cfg_drop``. Every random choice is seeded by ``(seed, round, item)``, so a
  run is reproducible and a resumed run sees the same data.
* :func:`collate` pads a list of examples into the batch the model takes.
* :class:`LMIterFactory` (an ESPnet ``AbsIterFactory``) bucket-batches each round by length
  (:mod:`ualm_tk.data.lm_batching`), logs the padding share, honours ``num_iters_per_epoch`` by
  cutting one endless deterministic stream of batches into epochs, and shards batches over
  DDP ranks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory

from ualm_tk.data.lm_batching import bucket_batches, padding_share
from ualm_tk.data.task_data import TaskData
from ualm_tk.data.task_templates import (
    ExampleTooLong,
    RenderedExample,
    TaskDataError,
    get_template,
    make_unconditional,
    stream_weights,
)
from ualm_tk.models.ualm import TASK_IDS
from ualm_tk.patterns.abs_pattern import AbsPattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSource:
    """One ``data.json`` of ``task`` with up-sampling factor ``factor`` (> 0)."""

    path: str
    task: str
    factor: float = 1.0


class LMDataset:
    """Map-style dataset over ``(item, round)`` pairs; see the module docstring."""

    def __init__(
        self,
        sources: Sequence[TaskSource],
        layout: TokenLayout,
        pattern: AbsPattern,
        pattern_name: str = "delay",
        train: bool = True,
        cfg_drop: float = 0.05,
        cfg_scope: str = "condition",
        max_len: Optional[int] = None,
        sample_rate: int = 16000,
        audio_weight: Optional[Any] = None,  # a number or one per stream (stream_weights)
        seed: int = 0,
    ):
        if not sources:
            raise TaskDataError("no data: give at least one data.json (path,task,data_json)")
        if not 0.0 <= cfg_drop <= 1.0:
            raise ValueError(f"cfg_drop must be in [0, 1], got {cfg_drop}")
        self.layout, self.pattern = layout, pattern
        self.train, self.cfg_drop, self.cfg_scope = train, float(cfg_drop), cfg_scope
        # [K], resolved once: a bad data_conf.audio_weight fails here, not mid-epoch
        self.audio_weight = stream_weights(audio_weight, layout.num_codebooks)
        self.sample_rate, self.seed = int(sample_rate), int(seed)
        self.max_len = max_len
        self.sources = list(sources)
        self.data: List[TaskData] = []
        self.items: List[Tuple[int, str]] = []  # (source index, key)
        lengths: List[int] = []
        self.source_items: List[np.ndarray] = []
        for si, src in enumerate(self.sources):
            get_template(src.task)  # unknown task -> error listing the known ones
            if not src.factor > 0 or not math.isfinite(src.factor):
                raise ValueError(f"{src.path}: up-sampling factor for task {src.task} must be > 0, got {src.factor}")
            d = TaskData.load(src.path)
            if d.task != src.task:
                raise TaskDataError(f"{src.path}: holds task '{d.task}', but it was given as task '{src.task}'")
            d.check_layout(layout)
            if d.pattern != pattern_name:
                raise TaskDataError(
                    f"{src.path}: lengths were computed with pattern '{d.pattern}', the model uses '{pattern_name}'"
                )
            if d.num_examples == 0:
                raise TaskDataError(f"{src.path}: no examples")
            start = len(self.items)
            for key in d.keys():
                n = d.length(key)
                if max_len is not None and n > max_len:
                    raise ExampleTooLong(
                        f"{src.path}: key '{key}': example has {n} positions, more than the model's context "
                        f"max_len={max_len} (filter it out in stage 4 with --max_len)"
                    )
                self.items.append((si, key))
                lengths.append(n)
            self.source_items.append(np.arange(start, len(self.items)))
            self.data.append(d)
        self.lengths = np.asarray(lengths, dtype=np.int64)

    # ------------------------------------------------------------------ blending
    def round_items(self, rnd: int) -> np.ndarray:
        """Item indices of round ``rnd`` (each source up-sampled by its factor); unshuffled."""
        out = []
        for si, src in enumerate(self.sources):
            idx = self.source_items[si]
            f = src.factor if self.train else 1.0
            whole, frac = int(math.floor(f)), f - math.floor(f)
            out.extend([idx] * whole)
            extra = int(round(frac * len(idx)))
            if extra:
                rng = np.random.default_rng([self.seed, rnd, si, 7])
                out.append(np.sort(rng.choice(idx, size=extra, replace=False)))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def token_shares(self, items: Sequence[int]) -> Dict[str, float]:
        """Share of the positions of ``items`` per task."""
        items = np.asarray(items, dtype=np.int64)
        total = float(self.lengths[items].sum()) or 1.0
        shares: Dict[str, float] = {}
        src_of = np.asarray([s for s, _ in self.items])[items]
        for si, src in enumerate(self.sources):
            shares[src.task] = shares.get(src.task, 0.0) + float(self.lengths[items[src_of == si]].sum()) / total
        return shares

    # ------------------------------------------------------------------ examples
    def __len__(self) -> int:
        return len(self.items)

    def render(self, item: int, rnd: int = 0) -> Tuple[str, str, RenderedExample]:
        """``(key, task, example)``; CFG dropout applied in training (seeded by seed, round, item)."""
        si, key = self.items[item]
        d = self.data[si]
        ex = d.render(key, self.layout, self.pattern, audio_weight=self.audio_weight, max_len=self.max_len)
        if self.train and self.cfg_drop > 0 and ex.has_condition:
            u = np.random.default_rng([self.seed, rnd, item, 1]).random()
            if u < self.cfg_drop:
                ex = make_unconditional(ex, self.cfg_scope)
        return key, d.task, ex

    def load_audio(self, path: str, num_samples: int, key: str) -> np.ndarray:
        """Mono float32 ``[L]`` at ``sample_rate``; errors name the file and the example key."""
        return load_wav(path, self.sample_rate, key, num_samples)

    def __getitem__(self, index: Tuple[int, int]) -> Dict[str, Any]:
        item, rnd = index
        key, task, ex = self.render(int(item), int(rnd))
        audio = [self.load_audio(f.wav, f.num_samples, key) for f in ex.audio_feats]
        return dict(key=key, task=task, tokens=ex.tokens, loss_mask=ex.loss_mask, audio=audio)


def load_wav(path: str, sample_rate: int, key: str, num_samples: Optional[int] = None) -> np.ndarray:
    """Read a mono wav ``[L]`` float32 and check its rate (and length); errors name the file and key."""
    import soundfile

    try:
        wav, sr = soundfile.read(path, dtype="float32", always_2d=True)  # [L,C]
    except Exception as e:
        raise TaskDataError(f"key '{key}': cannot read audio {path}: {e}") from None
    if sr != sample_rate:
        raise TaskDataError(
            f"key '{key}': {path} is {sr} Hz, the audio encoder takes {sample_rate} Hz (resample in stage 2)"
        )
    if wav.shape[1] != 1:
        raise TaskDataError(f"key '{key}': {path} has {wav.shape[1]} channels, the audio encoder takes mono")
    if wav.shape[0] == 0:
        raise TaskDataError(f"key '{key}': {path} is empty")
    if num_samples is not None and wav.shape[0] != num_samples:
        raise TaskDataError(f"key '{key}': {path} has {wav.shape[0]} samples, data.json says {num_samples}")
    return wav[:, 0]


def collate(examples: Sequence[Dict[str, Any]]) -> Tuple[List[str], Dict[str, torch.Tensor]]:
    """Pad examples (right, with ``<pad>`` / mask 0) -> ``(keys, batch)``.

    batch: ``tokens [B,S,K]`` long, ``loss_mask [B,S,K]`` float, ``lengths [B]``, ``task_ids [B]``
    and, when any example has user audio, ``audio [N,1,L]``, ``audio_lengths [N]``, ``audio_rows [N]``.
    """
    B = len(examples)
    S = max(int(e["tokens"].shape[0]) for e in examples)
    K = int(examples[0]["tokens"].shape[1])
    tokens = torch.full((B, S, K), sp.PAD, dtype=torch.long)
    mask = torch.zeros((B, S, K), dtype=torch.float32)
    lengths = torch.zeros(B, dtype=torch.long)
    clips, rows = [], []
    for b, e in enumerate(examples):
        n = e["tokens"].shape[0]
        tokens[b, :n] = torch.from_numpy(e["tokens"])
        mask[b, :n] = torch.from_numpy(e["loss_mask"])
        lengths[b] = n
        for a in e["audio"]:
            clips.append(a)
            rows.append(b)
    batch: Dict[str, torch.Tensor] = dict(
        tokens=tokens, loss_mask=mask, lengths=lengths,
        task_ids=torch.tensor([TASK_IDS[e["task"]] for e in examples], dtype=torch.long),
    )
    if clips:
        L = max(len(a) for a in clips)
        audio = torch.zeros(len(clips), 1, L)
        for i, a in enumerate(clips):
            audio[i, 0, : len(a)] = torch.from_numpy(a)
        batch.update(audio=audio, audio_lengths=torch.tensor([len(a) for a in clips]), audio_rows=torch.tensor(rows))
    return [e["key"] for e in examples], batch


class LMIterFactory(AbsIterFactory):
    """Endless deterministic stream of bucketed batches, cut into epochs (see module doc)."""

    def __init__(
        self,
        dataset: LMDataset,
        batch_bins: int,
        max_batch_size: Optional[int] = None,
        seed: int = 0,
        num_iters_per_epoch: Optional[int] = None,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ):
        self.dataset = dataset
        self.batch_bins, self.max_batch_size = int(batch_bins), max_batch_size
        self.seed, self.num_iters_per_epoch, self.shuffle = int(seed), num_iters_per_epoch, shuffle
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self._rounds: Dict[int, List[List[Tuple[int, int]]]] = {}
        self.last_padding_share: Optional[float] = None
        self.last_shares: Optional[Dict[str, float]] = None

    def round_batches(self, rnd: int) -> List[List[Tuple[int, int]]]:
        """This rank's batches of round ``rnd`` (lists of ``(item, round)``); logs shares and padding."""
        if rnd in self._rounds:
            return self._rounds[rnd]
        ds = self.dataset
        items = ds.round_items(rnd)
        lens = ds.lengths[items]
        batches = bucket_batches(lens, self.batch_bins, self.max_batch_size, seed=self.seed + rnd, shuffle=self.shuffle)
        share, real, total = padding_share(batches, lens)
        self.last_padding_share = share
        self.last_shares = ds.token_shares(items)
        logger.info(
            "data round %d: %d examples, %d batches, %d positions; padding share %.1f%%; token shares %s",
            rnd, len(items), len(batches), real, 100 * share,
            ", ".join(f"{t} {100 * s:.1f}%" for t, s in self.last_shares.items()),
        )
        if self.world_size > 1:
            n = len(batches) - len(batches) % self.world_size
            if n == 0:
                raise TaskDataError(f"round {rnd} has {len(batches)} batches, fewer than the {self.world_size} ranks")
            batches = batches[self.rank : n : self.world_size]
        out = [[(int(items[i]), rnd) for i in b] for b in batches]
        self._rounds = {rnd: out}  # keep only the current round
        return out

    def epoch_batches(self, epoch: int) -> List[List[Tuple[int, int]]]:
        """Batches of ``epoch`` (1-based): a whole round, or the next ``num_iters_per_epoch`` of the stream."""
        n = self.num_iters_per_epoch
        if n is None:
            return self.round_batches(epoch)
        start, stop = (epoch - 1) * n, epoch * n
        out: List[List[Tuple[int, int]]] = []
        rnd, offset = 1, 0
        while offset < stop:
            sizes = self._round_size(rnd)
            lo, hi = max(start - offset, 0), min(stop - offset, sizes)
            if lo < hi:
                out.extend(self.round_batches(rnd)[lo:hi])
            offset += sizes
            rnd += 1
        return out

    def _round_size(self, rnd: int) -> int:
        if not hasattr(self, "_sizes"):
            self._sizes: Dict[int, int] = {}
        if rnd not in self._sizes:
            self._sizes[rnd] = len(self.round_batches(rnd))
        return self._sizes[rnd]

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None) -> Iterator:
        from torch.utils.data import DataLoader

        batches = self.epoch_batches(epoch)
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers)
