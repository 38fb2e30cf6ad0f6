"""How far a scorer can be trusted: tagging accuracy / mAP and text–audio retrieval recall on held-out clips.

Definitions (also written into RESULTS.md):

* **exact-set accuracy**: share of clips whose predicted label set (posterior > threshold) equals
  the ground-truth event set exactly (every class right, no extra class). Reported on all clips
  and on the clips whose classes were all seen in training (the model's class list is the
  training set's), per metadata ``category``, and per named subset of utt ids (e.g. clips made
  of parameter combinations or recordings held out of training).
* **event detection accuracy** (recall): share of ground-truth (clip, class) events detected;
  **event precision**: share of predicted (clip, class) labels that are true.
* **mAP**: mean over classes present in the set of the average precision of ranking clips by the
  class posterior (scikit-learn); chance = the class's prevalence, averaged the same way.
* **frame F1**: micro F1 of frame decisions (posterior > threshold) against frames overlapping an
  event's onset–offset, at the scorer's frame rate.
* **recall@k** (text→audio): share of captions whose clip ranks in the top k among all clips of
  the set by cosine; a clip whose caption is identical to the query counts as correct (such
  duplicates are counted in the report; a strict variant counts only the paired clip). Chance =
  expected recall@k of a random ranking.
"""

from __future__ import annotations

import logging
from math import comb
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.corpus import Clip, FrameF1, frame_targets

logger = logging.getLogger(__name__)


def _read(c: Clip):
    wav, sr = sf.read(str(c.wav_path), dtype="float32", always_2d=True)
    return wav.T, sr  # [C, L]


def retrieval_ranks(sim: np.ndarray, groups: Sequence[Any]) -> np.ndarray:
    """``sim [Q, N]`` (Q == N; query i's correct items j have ``groups[j] == groups[i]``) -> rank per query (1 = best).

    rank = 1 + number of wrong items scoring strictly above the best correct item.
    """
    g = np.asarray([hash(x) for x in groups])
    correct = g[:, None] == g[None, :]  # [Q, N]
    best = np.where(correct, sim, -np.inf).max(axis=1)  # [Q]
    return 1 + ((sim > best[:, None]) & ~correct).sum(axis=1)


def chance_recall(groups: Sequence[Any], k: int) -> float:
    """Expected recall@k of a uniformly random ranking (hypergeometric: at least one correct in the top k)."""
    n = len(groups)
    counts = {}
    for x in groups:
        counts[x] = counts.get(x, 0) + 1
    k = min(k, n)
    return float(np.mean([1.0 - comb(n - counts[x], k) / comb(n, k) for x in groups]))


def evaluate_retrieval(scorer: AbsScorer, clips: Sequence[Clip], ks=(1, 5, 10)) -> Dict[str, Any]:
    caps = [c.caption for c in clips]
    if any(not c for c in caps):
        raise ValueError("retrieval evaluation needs a caption (data_dir/text) for every clip")
    A = np.stack([scorer.embed_audio(*_read(c)) for c in tqdm(clips, desc="audio embeddings", mininterval=10)])
    T = scorer.embed_texts(caps)
    sim = T @ A.T  # [N text, N audio]
    t2a = retrieval_ranks(sim, caps)
    a2t = retrieval_ranks(sim.T, caps)
    n = len(clips)
    strict = retrieval_ranks(sim, list(range(n)))  # only the paired clip counts
    off = ~np.eye(n, dtype=bool)
    res = {
        "num_clips": n, "num_distinct_captions": len(set(caps)),
        "text_to_audio": {f"R@{k}": float((t2a <= k).mean()) for k in ks},
        "audio_to_text": {f"R@{k}": float((a2t <= k).mean()) for k in ks},
        "text_to_audio_strict": {f"R@{k}": float((strict <= k).mean()) for k in ks},
        "chance": {f"R@{k}": chance_recall(caps, k) for k in ks},
        "median_rank_t2a": float(np.median(t2a)),
        "mean_cosine_matched": float(np.diag(sim).mean()),
        "mean_cosine_mismatched": float(sim[off].mean()),
    }
    return res


def _group(ok: np.ndarray, found: np.ndarray, n_events: np.ndarray, rows: List[int]) -> Dict[str, Any]:
    """Exact-set accuracy and event recall over the clips ``rows``."""
    rows = np.asarray(rows, dtype=int)
    return {"num_clips": int(len(rows)),
            "exact_set_accuracy": float(ok[rows].mean()) if len(rows) else float("nan"),
            "event_detection_accuracy": float(found[rows].sum() / max(1, n_events[rows].sum()))}


def evaluate_tagging(scorer: AbsScorer, clips: Sequence[Clip],
                     subsets: Optional[Dict[str, Iterable[str]]] = None) -> Dict[str, Any]:
    """Tagging metrics over ``clips``; ``subsets``: name -> utt ids reported separately."""
    from sklearn.metrics import average_precision_score

    names = scorer.class_names
    index = {c: i for i, c in enumerate(names)}
    thr = float(getattr(scorer, "threshold", 0.5))
    has_frames = "frame_posteriors" in scorer.capabilities
    P, Y, unknown = [], [], set()
    frame_f1 = FrameF1()
    for c in tqdm(clips, desc="tagging", mininterval=10):
        wav, sr = _read(c)
        p, _ = scorer.clip_posteriors(wav, sr)
        y = np.zeros(len(names))
        for e in c.events:
            if e.label in index:
                y[index[e.label]] = 1
            else:
                unknown.add(e.label)
        P.append(p)
        Y.append(y)
        if has_frames:
            fp, rate, _ = scorer.frame_posteriors(wav, sr)
            frame_f1.add(fp > thr, frame_targets(c.events, index, fp.shape[0], rate).numpy() > 0.5)
    P, Y = np.stack(P), np.stack(Y)  # [N, C]
    # events of classes the scorer does not know count as missed
    n_unknown = sum(1 for c in clips for lab in c.labels if lab not in index)
    pred = P > thr
    ok = np.array([(pred[i] == (Y[i] > 0)).all() and not any(l not in index for l in clips[i].labels)
                   for i in range(len(clips))])
    exact = float(ok.mean())
    n_events = np.array([len(c.labels) for c in clips])  # unknown classes included (counted as missed)
    found = (pred & (Y > 0)).sum(axis=1)
    seen = [i for i, c in enumerate(clips) if all(lab in index for lab in c.labels)]
    cats: Dict[str, List[int]] = {}
    for i, c in enumerate(clips):
        cats.setdefault(c.category or "-", []).append(i)
    by_subset = {}
    for sub, utts in (subsets or {}).items():
        want = set(utts)
        rows = [i for i, c in enumerate(clips) if c.utt in want]
        by_subset[sub] = _group(ok, found, n_events, rows)
        by_subset[f"not {sub}"] = _group(ok, found, n_events, [i for i in range(len(clips)) if clips[i].utt not in want])
    n_true = int(Y.sum()) + n_unknown
    tp = int((pred & (Y > 0)).sum())
    present = np.where(Y.sum(0) > 0)[0]
    aps = [average_precision_score(Y[:, j], P[:, j]) for j in present]
    sets = [tuple(c.labels) for c in clips]
    majority = max(set(sets), key=sets.count)
    res = {
        "num_clips": len(clips), "num_events": n_true, "num_classes_model": len(names),
        "num_classes_present": int(len(present)), "threshold": thr,
        "exact_set_accuracy": exact,
        "seen_classes": _group(ok, found, n_events, seen),
        "by_category": {k: _group(ok, found, n_events, v) for k, v in sorted(cats.items())},
        "by_subset": by_subset,
        "event_detection_accuracy": tp / max(1, n_true),
        "event_precision": tp / max(1, int(pred.sum())),
        "mAP": float(np.mean(aps)) if aps else float("nan"),
        "chance": {
            "exact_set_accuracy_majority_set": sets.count(majority) / len(sets),
            "majority_set": list(majority),
            "mAP_prevalence": float(np.mean(Y[:, present].mean(0))) if len(present) else float("nan"),
        },
        "unknown_classes": sorted(unknown),
    }
    if has_frames:
        res["frame_f1"] = frame_f1.f1
        res["frame_rate"] = float(rate)
    return res


def results_markdown(name: str, set_name: str, scorer: AbsScorer, res: Dict[str, Any]) -> str:
    lines = [f"# Scorer `{name}` on `{set_name}`", "",
             f"Sample rate {scorer.sample_rate} Hz; capabilities: embed + {', '.join(scorer.capabilities)}.", ""]
    if "tagging" in res:
        t = res["tagging"]
        lines += [
            f"## Tagging ({t['num_clips']} clips, {t['num_events']} events, {t['num_classes_present']} classes present "
            f"of {t['num_classes_model']}, threshold {t['threshold']})", "",
            "| metric | value | chance / baseline | direction |", "|---|---:|---:|---|",
            f"| exact-set accuracy (predicted set == true set) | {t['exact_set_accuracy']:.3f} | "
            f"{t['chance']['exact_set_accuracy_majority_set']:.3f} (always {t['chance']['majority_set']}) | ↑ |",
            f"| event detection accuracy (true events found) | {t['event_detection_accuracy']:.3f} | – | ↑ |",
            f"| event precision | {t['event_precision']:.3f} | – | ↑ |",
            f"| mAP (macro over present classes) | {t['mAP']:.3f} | {t['chance']['mAP_prevalence']:.3f} | ↑ |",
        ]
        if "frame_f1" in t:
            lines.append(f"| frame F1 at {t['frame_rate']:g} frames/s | {t['frame_f1']:.3f} | – | ↑ |")
        if "seen_classes" in t:
            g = t["seen_classes"]
            lines += ["", "| clips | n | exact-set accuracy | event detection |", "|---|---:|---:|---:|",
                      f"| all | {t['num_clips']} | {t['exact_set_accuracy']:.3f} | {t['event_detection_accuracy']:.3f} |",
                      f"| classes all seen in training | {g['num_clips']} | {g['exact_set_accuracy']:.3f} | "
                      f"{g['event_detection_accuracy']:.3f} |"]
            for kind, groups in (("category", t["by_category"]), ("subset", t["by_subset"])):
                for k, g in groups.items():
                    lines.append(f"| {kind} `{k}` | {g['num_clips']} | {g['exact_set_accuracy']:.3f} | "
                                 f"{g['event_detection_accuracy']:.3f} |")
        if t["unknown_classes"]:
            lines.append(f"\nClasses in the data unknown to the model (counted as missed): {t['unknown_classes']}")
        lines.append("")
    if "retrieval" in res:
        r = res["retrieval"]
        ks = list(r["text_to_audio"])
        lines += [
            f"## Text–audio retrieval ({r['num_clips']} clips, {r['num_distinct_captions']} distinct captions)", "",
            "| direction | " + " | ".join(ks) + " |", "|---|" + "---:|" * len(ks),
            "| text → audio | " + " | ".join(f"{r['text_to_audio'][k]:.3f}" for k in ks) + " |",
            "| audio → text | " + " | ".join(f"{r['audio_to_text'][k]:.3f}" for k in ks) + " |",
            "| text → audio, strict (only the paired clip counts) | "
            + " | ".join(f"{r['text_to_audio_strict'][k]:.3f}" for k in ks) + " |",
            "| chance | " + " | ".join(f"{r['chance'][k]:.3f}" for k in ks) + " |", "",
            f"Median text→audio rank {r['median_rank_t2a']:g}; mean cosine matched {r['mean_cosine_matched']:.3f} "
            f"vs mismatched {r['mean_cosine_mismatched']:.3f} (the CLAP-score scale of this model).", "",
        ]
    lines += ["Definitions: see `ualm_tk/scoring/models/evaluation.py` (identical captions count as correct "
              "retrievals; events of classes unknown to the model count as missed).", ""]
    return "\n".join(lines)
