"""Event accuracy and event-order accuracy of generated clips against their captions' metadata.

Inputs are a tagger's frame posteriors for each generated clip — the interface
``frame_posteriors(wav [1, L], sr) -> (probs [T, C], frame_rate, class_names)`` — and the
caption's ground truth, ``data/<set>/metadata`` (one JSON per key with ``layout`` and
``events: [{class, onset, offset, ...}]``).

Decision rule (one, fixed): a class is **detected** in a clip when its clip-level maximum
posterior over frames reaches ``threshold`` (default 0.5); its **detected onset** is the first
frame where the posterior reaches ``threshold``.

* ``event_recall`` (the event accuracy): detected ground-truth events / ground-truth events,
  micro-averaged over all clips (a class listed twice in one clip counts once).
* ``event_precision``: detected classes that are in the ground truth / all detected classes.
* ``event_order_accuracy``: over clips with layout ``sequence`` and ≥ 2 distinct classes, every
  pair (a before b) of distinct classes ordered by their first ground-truth onset is correct when
  both are detected and ``onset(a) < onset(b)`` strictly; undetected or tied pairs are wrong.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file
from ualm_tk.scoring.metrics.result import HIGHER, MetricResult, check_same_keys

logger = logging.getLogger(__name__)

# (probs [T, C], frame_rate in frames/s, class_names [C])
FramePosteriors = Tuple[np.ndarray, float, Sequence[str]]


def load_metadata(path: Union[str, Path]) -> Dict[str, Dict[str, Any]]:
    """Read ``data/<set>/metadata``: key -> dict; errors name file, line and key."""
    out: Dict[str, Dict[str, Any]] = {}
    lines = {}
    raw = read_kaldi_file(path)
    for lineno, (key, value) in enumerate(raw.items(), start=1):
        lines[key] = lineno
        try:
            meta = json.loads(value)
        except json.JSONDecodeError as e:
            raise KaldiFileError(path, lineno, key, f"value is not JSON ({e.msg} at column {e.colno})") from None
        events = meta.get("events") if isinstance(meta, dict) else None
        if not isinstance(events, list) or not events:
            raise KaldiFileError(path, lineno, key, "metadata needs a non-empty 'events' list")
        for i, ev in enumerate(events):
            for field in ("class", "onset", "offset"):
                if not isinstance(ev, dict) or field not in ev:
                    raise KaldiFileError(path, lineno, key, f"event {i} lacks '{field}'")
        out[key] = meta
    return out


def detect(probs: np.ndarray, frame_rate: float, class_names: Sequence[str], threshold: float = 0.5
           ) -> Dict[str, float]:
    """Detected classes of one clip -> onset in seconds (first frame with posterior >= threshold)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(class_names) or p.shape[0] == 0:
        raise ValueError(f"posteriors must be [T, C] with C = {len(class_names)} classes, got shape {p.shape}")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    hit = p >= threshold  # [T, C]
    out = {}
    for c in np.where(hit.any(axis=0))[0]:
        out[class_names[c]] = float(np.argmax(hit[:, c]) / frame_rate)
    return out


def _ground_truth(meta: Mapping[str, Any]) -> List[Tuple[str, float]]:
    """Distinct classes with their first ground-truth onset, in onset order."""
    first: Dict[str, float] = {}
    for ev in meta["events"]:
        c, t = str(ev["class"]), float(ev["onset"])
        first[c] = min(t, first.get(c, t))
    return sorted(first.items(), key=lambda kv: (kv[1], kv[0]))


def clip_event_scores(post: FramePosteriors, meta: Mapping[str, Any], threshold: float = 0.5,
                      key: str = "") -> Dict[str, Any]:
    """Counts for one clip: gt classes, hits, detected, and ordered pairs (correct / total)."""
    probs, frame_rate, names = post
    gt = _ground_truth(meta)
    unknown = [c for c, _ in gt if c not in names]
    if unknown:
        raise ValueError(f"key {key}: ground-truth class(es) {unknown} are not among the tagger's "
                         f"{len(names)} classes; the tagger cannot score them")
    found = detect(probs, frame_rate, names, threshold)
    gt_classes = [c for c, _ in gt]
    hits = [c for c in gt_classes if c in found]
    pairs = correct = 0
    if meta.get("layout") == "sequence" and len(gt) >= 2:
        for i in range(len(gt)):
            for j in range(i + 1, len(gt)):
                a, b = gt_classes[i], gt_classes[j]
                pairs += 1
                correct += int(a in found and b in found and found[a] < found[b])
    return {"gt": gt_classes, "hits": hits, "detected": sorted(found), "onsets": found,
            "pairs": pairs, "correct_pairs": correct}


def event_metrics(posteriors: Mapping[str, FramePosteriors], metadata: Mapping[str, Mapping[str, Any]],
                  backbone: str, sample_rate: Optional[int], threshold: float = 0.5) -> Dict[str, MetricResult]:
    """``event_recall``, ``event_precision``, ``event_order_accuracy`` over the full key set."""
    keys = check_same_keys(posteriors, metadata, "tagger posteriors", "metadata")
    n_gt = n_hit = n_det = n_det_true = n_pairs = n_correct = n_seq = 0
    per_key = {}
    for k in keys:
        s = clip_event_scores(posteriors[k], metadata[k], threshold, key=k)
        n_gt += len(s["gt"])
        n_hit += len(s["hits"])
        n_det += len(s["detected"])
        n_det_true += sum(c in s["gt"] for c in s["detected"])
        n_pairs += s["pairs"]
        n_correct += s["correct_pairs"]
        n_seq += int(s["pairs"] > 0)
        per_key[k] = {"missed": [c for c in s["gt"] if c not in s["hits"]],
                      "false": [c for c in s["detected"] if c not in s["gt"]],
                      "order_correct": f"{s['correct_pairs']}/{s['pairs']}"}
    rule = f"clip max posterior >= {threshold}; onset = first frame >= {threshold}"
    res = {
        "event_recall": MetricResult("event_recall", n_hit / n_gt, HIGHER, backbone, sample_rate, len(keys),
                                     {"detected_gt_events": n_hit, "gt_events": n_gt, "rule": rule,
                                      "per_key": per_key}),
        "event_precision": MetricResult("event_precision", n_det_true / n_det if n_det else 0.0, HIGHER, backbone,
                                        sample_rate, len(keys), {"true_detections": n_det_true,
                                                                 "detections": n_det, "rule": rule}),
    }
    if n_pairs:
        res["event_order_accuracy"] = MetricResult(
            "event_order_accuracy", n_correct / n_pairs, HIGHER, backbone, sample_rate, n_seq,
            {"correct_pairs": n_correct, "pairs": n_pairs, "rule": rule + "; undetected or tied pairs are wrong"})
    else:
        logger.info("no 'sequence' clips with >= 2 classes: event_order_accuracy not computed")
    return res
