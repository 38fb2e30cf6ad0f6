"""The DPO reward: ``reward_fn(caption_key, wav[1,L], sr) -> float`` from configurable scorers.

Components (each in [0, 1] or [-1, 1], higher is better; a component that does not apply to a
caption is left out and the weights of the others are renormalised, so candidates of one prompt
are always compared on the same components):

* ``similarity``: text–audio similarity of the caption and the audio (a CLAP-style scorer,
  ``similarity(text, wav[1,L], sr) -> float``, cosine in [-1, 1]).
* ``event``: does the audio hold the caption's events and nothing else? From a tagger's frame
  posteriors ``frame_posteriors(wav[1,L], sr) -> (probs[T,C], frame_rate, class_names)`` and the
  caption's ground-truth events (``metadata[key]["events"][i]["class"]``):
  ``soft_recall · precision`` with ``soft_recall = mean_{c∈GT} max_t p[t,c]`` and
  ``precision = |D ∩ GT| / |D|`` over the detected set ``D = {c : max_t p[t,c] ≥ threshold}``
  (1 when nothing is detected; the soft recall is then low anyway).
* ``order``: for captions whose layout is ``sequence`` with ≥ 2 events of different classes, the
  share of ground-truth ordered pairs (by onset) whose detected onsets (first frame with
  ``p ≥ threshold``, else the frame of the maximum) are in the same order.

``reward = Σ w_i·component_i / Σ w_i`` over the applicable components; :meth:`CaptionReward.components`
returns them all (logged per candidate at DEBUG, written to a file by ``ualm_tk.bin.dpo_pairs``).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

Similarity = Callable[[str, np.ndarray, int], float]  # (text, wav [1,L], sr) -> score
FramePosteriors = Callable[[np.ndarray, int], Tuple[np.ndarray, float, Sequence[str]]]
RewardFn = Callable[[str, np.ndarray, int], float]  # (caption key, wav [1,L], sr) -> reward


class RewardError(ValueError):
    """A caption key without caption/metadata, a scorer output of the wrong shape, ..."""


def event_match(probs: np.ndarray, class_names: Sequence[str], gt_classes: Sequence[str], threshold: float = 0.5) -> float:
    """``soft_recall · precision`` (module doc). ``probs [T,C]`` in [0, 1]."""
    idx = {c: i for i, c in enumerate(class_names)}
    gt = sorted(set(gt_classes))
    unknown = [c for c in gt if c not in idx]
    if unknown:
        raise RewardError(f"event class(es) {unknown} are not among the tagger's {len(class_names)} classes")
    if not gt:
        raise RewardError("no ground-truth events")
    peak = probs.max(axis=0) if probs.shape[0] else np.zeros(len(class_names))  # [C]
    soft_recall = float(np.mean([peak[idx[c]] for c in gt]))
    detected = {class_names[i] for i in np.nonzero(peak >= threshold)[0]}
    precision = len(detected & set(gt)) / len(detected) if detected else 1.0
    return soft_recall * precision


def onset_frame(p: np.ndarray, threshold: float) -> int:
    """First frame with ``p ≥ threshold``, else the frame of the maximum. ``p [T]``."""
    above = np.nonzero(p >= threshold)[0]
    return int(above[0]) if above.size else int(np.argmax(p))


def order_match(probs: np.ndarray, class_names: Sequence[str], events: Sequence[Mapping], threshold: float = 0.5) -> Optional[float]:
    """Share of ground-truth ordered event pairs whose detected onsets keep the order; None if < 2 classes."""
    idx = {c: i for i, c in enumerate(class_names)}
    first: Dict[str, float] = {}
    for e in sorted(events, key=lambda e: float(e["onset"])):
        first.setdefault(e["class"], float(e["onset"]))
    seq = sorted(first, key=first.get)
    if len(seq) < 2:
        return None
    for c in seq:
        if c not in idx:
            raise RewardError(f"event class {c!r} is not among the tagger's classes")
    on = {c: onset_frame(probs[:, idx[c]], threshold) for c in seq}
    pairs = [(a, b) for i, a in enumerate(seq) for b in seq[i + 1 :]]
    return float(np.mean([on[a] < on[b] for a, b in pairs]))


class CaptionReward:
    """``reward(caption_key, wav[1,L], sr) -> float`` (module doc).

    ``captions``: key -> caption text (for ``similarity``); ``metadata``: key -> corpus metadata
    dict with ``events`` (``class``, ``onset``, ``offset``) and ``layout`` (for ``event``/``order``).
    """

    def __init__(
        self,
        captions: Optional[Mapping[str, str]] = None,
        metadata: Optional[Mapping[str, Mapping]] = None,
        similarity: Optional[Similarity] = None,
        frame_posteriors: Optional[FramePosteriors] = None,
        weights: Optional[Mapping[str, float]] = None,
        threshold: float = 0.5,
    ):
        self.weights = dict(similarity=1.0, event=1.0, order=1.0)
        unknown = set(weights or {}) - set(self.weights)
        if unknown:
            raise ValueError(f"unknown reward weight(s) {sorted(unknown)} (known: {sorted(self.weights)})")
        self.weights.update(weights or {})
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"reward weights must be >= 0, got {self.weights}")
        if similarity is None and frame_posteriors is None:
            raise ValueError("the reward needs a similarity scorer and/or a tagger (frame_posteriors)")
        if similarity is not None and captions is None:
            raise ValueError("the similarity component needs the captions")
        if frame_posteriors is not None and metadata is None:
            raise ValueError("the event/order components need the metadata (events per caption key)")
        self.captions, self.metadata = captions, metadata
        self.similarity, self.frame_posteriors, self.threshold = similarity, frame_posteriors, float(threshold)

    def components(self, key: str, wav: np.ndarray, sr: int) -> Dict[str, float]:
        """Applicable components with non-zero weight for caption ``key``; ``wav [1,L]``."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 2 or wav.shape[0] != 1 or wav.shape[1] == 0:
            raise RewardError(f"caption '{key}': wav must be [1,L] with L > 0, got {wav.shape}")
        out: Dict[str, float] = {}
        if self.similarity is not None and self.weights["similarity"] > 0:
            if key not in self.captions:
                raise RewardError(f"caption key '{key}' has no caption text")
            out["similarity"] = float(self.similarity(self.captions[key], wav, sr))
        if self.frame_posteriors is not None and (self.weights["event"] > 0 or self.weights["order"] > 0):
            if key not in self.metadata:
                raise RewardError(f"caption key '{key}' has no metadata (events)")
            meta = self.metadata[key]
            events = meta.get("events") or []
            if not events:
                raise RewardError(f"caption key '{key}': metadata lists no events")
            probs, _rate, names = self.frame_posteriors(wav, sr)
            probs = np.asarray(probs, dtype=np.float64)
            if probs.ndim != 2 or probs.shape[1] != len(names):
                raise RewardError(f"tagger returned posteriors {probs.shape} for {len(names)} classes")
            if self.weights["event"] > 0:
                out["event"] = event_match(probs, names, [e["class"] for e in events], self.threshold)
            if self.weights["order"] > 0 and meta.get("layout") == "sequence":
                o = order_match(probs, names, events, self.threshold)
                if o is not None:
                    out["order"] = o
        for name, v in out.items():
            if not np.isfinite(v):
                raise RewardError(f"caption '{key}': component {name} is {v}")
        return out

    def combine(self, comps: Mapping[str, float]) -> float:
        w = sum(self.weights[k] for k in comps)
        if w <= 0:
            raise RewardError("no reward component applies (all weights zero?)")
        return float(sum(self.weights[k] * v for k, v in comps.items()) / w)

    def __call__(self, key: str, wav: np.ndarray, sr: int) -> float:
        comps = self.components(key, wav, sr)
        r = self.combine(comps)
        logger.debug("reward %s: %.4f (%s)", key, r, ", ".join(f"{k} {v:.4f}" for k, v in comps.items()))
        return r
