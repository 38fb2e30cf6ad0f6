"""Preference pairs from scored candidates, and the pairs file DPO training reads.

Selection (:func:`select_pairs`), per prompt, deterministic:

* fewer than 2 candidates -> skipped, counted as ``too_few``;
* all rewards equal (best == worst) -> skipped, counted as ``tie``;
* ``best − worst < min_gap`` -> skipped, counted as ``small_gap``;
* otherwise the pair (best, worst). Equal rewards inside a prompt are broken by candidate key in
  byte order (the smallest key wins both the best and the worst slot), so the result never depends
  on input order.

On disk (:func:`write_pairs`), a pairs directory::

    pairs.json          {"format": "ualm_dpo_pairs", "version": 1, "chosen": "chosen/data.json",
                         "rejected": "rejected/data.json", "min_gap": ..., "counts": {...},
                         "pairs": {prompt: {"chosen": cand, "rejected": cand,
                                            "reward_chosen": r, "reward_rejected": r}}}
    chosen/data.json    caption_to_audio data.json of the winners (also the CE fine-tune data)
    rejected/data.json  the same prompts with the losers' codes
    codes.ark, codes.scp  the chosen and rejected candidates' codes [T,K] (kaldiio, as dump/codes)

Both data.json files hold the same keys (the prompt keys); an example is the prompt's segments
with the assistant audio segment pointing at the candidate's codes, so training renders them
exactly like caption_to_audio examples.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ualm_tk.data.kaldi_files import byte_order_key, read_kaldi_file, write_kaldi_file
from ualm_tk.data.task_data import TaskData, load_codes
from ualm_tk.data.task_templates import Segment, TaskDataError, sequence_length

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
FORMAT = "ualm_dpo_pairs"
VERSION = 1
SKIP_REASONS = ("too_few", "tie", "small_gap")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str  # candidate key
    rejected: str
    reward_chosen: float
    reward_rejected: float

    @property
    def gap(self) -> float:
        return self.reward_chosen - self.reward_rejected


def select_pairs(
    rewards: Mapping[str, Mapping[str, float]], min_gap: float = 0.0
) -> Tuple[Dict[str, Pair], Dict[str, int]]:
    """``{prompt: {candidate: reward}}`` -> ``({prompt: Pair}, counts)`` (see module doc).

    ``counts`` has ``prompts``, ``pairs`` and one entry per skip reason.
    """
    if min_gap < 0 or not np.isfinite(min_gap):
        raise ValueError(f"min_gap must be a finite number >= 0, got {min_gap}")
    counts = {"prompts": 0, "pairs": 0, **{r: 0 for r in SKIP_REASONS}}
    pairs: Dict[str, Pair] = {}
    for prompt in sorted(rewards, key=byte_order_key):
        cands = rewards[prompt]
        counts["prompts"] += 1
        for c, r in cands.items():
            if not np.isfinite(r):
                raise ValueError(f"prompt '{prompt}': candidate '{c}' has a non-finite reward {r}")
        if len(cands) < 2:
            counts["too_few"] += 1
            continue
        keys = sorted(cands, key=byte_order_key)
        best = max(keys, key=lambda k: cands[k])  # first of the equal maxima in byte order
        worst = min(keys, key=lambda k: cands[k])
        gap = cands[best] - cands[worst]
        if gap == 0:
            counts["tie"] += 1
            continue
        if gap < min_gap:
            counts["small_gap"] += 1
            continue
        pairs[prompt] = Pair(prompt, best, worst, float(cands[best]), float(cands[worst]))
        counts["pairs"] += 1
    logger.info(
        "pairs: %d of %d prompts (skipped: %s; min_gap %g)",
        counts["pairs"], counts["prompts"], ", ".join(f"{r} {counts[r]}" for r in SKIP_REASONS), min_gap,
    )
    return pairs, counts


def _with_codes(prompts: TaskData, key: str, ref: str, num_frames: int) -> Dict:
    """The prompt example ``key`` with its (last) assistant audio segment replaced by ``ref``."""
    ex = copy.deepcopy(prompts.examples[key])
    segs = ex["segments"]
    if not segs or segs[-1].get("role") != "assistant" or segs[-1].get("modality") != "audio":
        raise TaskDataError(f"{prompts.path}: key '{key}': the last segment is not an assistant audio segment")
    segs[-1] = dict(segs[-1], codes=ref, num_frames=int(num_frames))
    parsed = [Segment.from_json(s, f"{prompts.path}: key '{key}' segment {i}") for i, s in enumerate(segs)]
    ex["length"] = sequence_length(parsed, _pattern(prompts.pattern), prompts.num_codebooks)
    return ex


def _pattern(name: str):
    from ualm_tk.patterns import build_pattern

    return build_pattern(name)


def write_pairs(
    out_dir: PathLike,
    pairs: Mapping[str, Pair],
    prompts: TaskData,
    candidate_codes: Mapping[str, str],
    counts: Optional[Mapping[str, int]] = None,
    min_gap: float = 0.0,
    codes_layout: str = "TK",
) -> Path:
    """Write the pairs directory (see module doc); returns the path of pairs.json.

    ``prompts``: the caption_to_audio data.json the candidates were sampled from;
    ``candidate_codes``: candidate key -> kaldiio reference of its codes (``codes_layout``).
    """
    import kaldiio

    if prompts.task != "caption_to_audio":
        raise TaskDataError(f"{prompts.path}: task {prompts.task}; DPO pairs are built for caption_to_audio")
    if not pairs:
        raise TaskDataError(f"no pairs to write to {out_dir} (every prompt was skipped: {dict(counts or {})})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used = sorted({p.chosen for p in pairs.values()} | {p.rejected for p in pairs.values()}, key=byte_order_key)
    for c in used:
        if c not in candidate_codes:
            raise TaskDataError(f"candidate '{c}' has no codes entry")
    ark, tmp_scp = out / "codes.ark", out / ".codes.scp.tmp"
    frames: Dict[str, int] = {}
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}", write_function="numpy") as writer:
        for c in used:
            codes = load_codes(candidate_codes[c], codes_layout)  # [K,T]
            if codes.shape[0] != prompts.num_codebooks:
                raise TaskDataError(f"candidate '{c}': {codes.shape[0]} codebooks, the prompts have {prompts.num_codebooks}")
            frames[c] = int(codes.shape[1])
            writer(c, codes.T.astype(np.int16 if prompts.codebook_size <= 32767 else np.int32))  # [T,K]
    refs = read_kaldi_file(tmp_scp)
    write_kaldi_file(out / "codes.scp", refs)
    tmp_scp.unlink()
    header = dict(
        task="caption_to_audio", token_bias=prompts.token_bias, token_list_sha256=prompts.token_list_sha256,
        num_codebooks=prompts.num_codebooks, codebook_size=prompts.codebook_size, pattern=prompts.pattern,
        codes_layout="TK", feat_frame_rate=prompts.feat_frame_rate, task_marker=prompts.task_marker,
    )
    sides = {}
    for side in ("chosen", "rejected"):
        examples = {}
        for key, p in pairs.items():
            if key not in prompts.examples:
                raise TaskDataError(f"{prompts.path}: no prompt with key '{key}' (pairs from another data.json?)")
            cand = getattr(p, side)
            ex = _with_codes(prompts, key, refs[cand], frames[cand])
            ex["meta"] = dict(ex.get("meta", {}), candidate=cand, reward=f"{getattr(p, 'reward_' + side):.6g}")
            examples[key] = ex
        TaskData(examples=examples, **header).save(out / side / "data.json")
        sides[side] = f"{side}/data.json"
    doc = {
        "format": FORMAT, "version": VERSION, **sides, "min_gap": float(min_gap), "counts": dict(counts or {}),
        "pairs": {
            k: {"chosen": p.chosen, "rejected": p.rejected, "reward_chosen": p.reward_chosen,
                "reward_rejected": p.reward_rejected}
            for k, p in sorted(pairs.items(), key=lambda kv: byte_order_key(kv[0]))
        },
    }
    path = out / "pairs.json"
    tmp = out / ".pairs.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    logger.info("wrote %d pairs to %s (winners for CE: %s)", len(pairs), path, out / "chosen" / "data.json")
    return path


@dataclass
class PairsFile:
    """A loaded pairs.json: the chosen and rejected TaskData (same keys) and the pair records."""

    path: str
    chosen: TaskData
    rejected: TaskData
    pairs: Dict[str, Pair]
    counts: Dict[str, int]

    def keys(self) -> List[str]:
        return self.chosen.keys()


def load_pairs(path: PathLike) -> PairsFile:
    """Read and check a pairs.json (see module doc); errors name the file and key."""
    p = Path(path)
    if not p.is_file():
        raise TaskDataError(f"{p}: pairs file not found")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaskDataError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TaskDataError(f"{p}: not a DPO pairs file (\"format\": \"{FORMAT}\" missing)")
    if doc.get("version") != VERSION:
        raise TaskDataError(f"{p}: version {doc.get('version')} is not supported (this code reads {VERSION})")
    for f in ("chosen", "rejected", "pairs"):
        if f not in doc:
            raise TaskDataError(f"{p}: missing field '{f}'")
    chosen = TaskData.load(p.parent / doc["chosen"])
    rejected = TaskData.load(p.parent / doc["rejected"])
    ck, rk, pk = set(chosen.keys()), set(rejected.keys()), set(doc["pairs"])
    if not ck == rk == pk:
        odd = sorted((ck ^ rk) | (ck ^ pk))[:5]
        raise TaskDataError(f"{p}: chosen, rejected and pairs hold different keys (e.g. {odd})")
    if not ck:
        raise TaskDataError(f"{p}: no pairs")
    pairs = {}
    for k, v in doc["pairs"].items():
        try:
            pairs[k] = Pair(k, str(v["chosen"]), str(v["rejected"]), float(v["reward_chosen"]), float(v["reward_rejected"]))
        except (KeyError, TypeError, ValueError) as e:
            raise TaskDataError(f"{p}: key '{k}': bad pair record {v}: {e}") from None
    return PairsFile(str(p), chosen, rejected, pairs, dict(doc.get("counts", {})))


def group_by_prompt(cand2prompt: Mapping[str, str], rewards: Mapping[str, float]) -> Dict[str, Dict[str, float]]:
    """``{candidate: prompt}`` + ``{candidate: reward}`` -> ``{prompt: {candidate: reward}}``."""
    missing = sorted(set(cand2prompt) - set(rewards))
    if missing:
        raise TaskDataError(f"{len(missing)} candidate(s) without a reward, e.g. {missing[:3]}")
    out: Dict[str, Dict[str, float]] = {}
    for c, p in cand2prompt.items():
        out.setdefault(p, {})[c] = float(rewards[c])
    return out


def summarize(rewards: Mapping[str, Mapping[str, float]], pairs: Mapping[str, Pair]) -> Dict[str, float]:
    """Mean reward of all candidates, of the best per prompt, of the chosen and rejected sides."""
    allr = [r for c in rewards.values() for r in c.values()]
    best = [max(c.values()) for c in rewards.values() if c]
    out = {"num_candidates": float(len(allr)), "mean_reward": float(np.mean(allr)) if allr else float("nan"),
           "mean_best_of_n": float(np.mean(best)) if best else float("nan")}
    if pairs:
        out["mean_reward_chosen"] = float(np.mean([p.reward_chosen for p in pairs.values()]))
        out["mean_reward_rejected"] = float(np.mean([p.reward_rejected for p in pairs.values()]))
        out["mean_gap"] = float(np.mean([p.gap for p in pairs.values()]))
    return out


def win_rate(a: Mapping[str, float], b: Mapping[str, float]) -> Dict[str, float]:
    """Per-prompt comparison of two systems' rewards (same keys): wins of ``a``, ties count half."""
    if set(a) != set(b):
        raise ValueError(f"win_rate: the two reward tables hold different prompts (e.g. {sorted(set(a) ^ set(b))[:3]})")
    if not a:
        raise ValueError("win_rate: no prompts")
    w = sum(1.0 if a[k] > b[k] else 0.5 if a[k] == b[k] else 0.0 for k in a)
    return {"win_rate": w / len(a), "num_prompts": float(len(a)),
            "mean_a": float(np.mean(list(a.values()))), "mean_b": float(np.mean(list(b.values())))}


def read_rewards(path: PathLike) -> Dict[str, float]:
    """A Kaldi-style ``<candidate> <reward>`` file -> dict (errors name the file and key)."""
    out = {}
    for k, v in read_kaldi_file(path).items():
        try:
            out[k] = float(v)
        except ValueError:
            raise TaskDataError(f"{path}: key '{k}': reward {v!r} is not a number") from None
    return out


def load_candidate_dirs(dirs: Sequence[PathLike]) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """Merge dpo_sample output dirs -> ``(cand2prompt, codes refs, wav paths)``; duplicate keys are errors."""
    c2p: Dict[str, str] = {}
    codes: Dict[str, str] = {}
    wavs: Dict[str, str] = {}
    for d in dirs:
        d = Path(d)
        for name, table in (("cand2prompt", c2p), ("codes.scp", codes), ("wav.scp", wavs)):
            f = d / name
            if not f.is_file():
                raise TaskDataError(f"{f}: missing ({d} is not a dpo_sample output dir)")
            for k, v in read_kaldi_file(f).items():
                if k in table:
                    raise TaskDataError(f"{f}: candidate '{k}' also appears in another candidates dir")
                table[k] = v
    for name, table in (("codes.scp", codes), ("wav.scp", wavs)):
        missing = sorted(set(c2p) - set(table))
        if missing:
            raise TaskDataError(f"{name}: no entry for candidate(s) {missing[:3]}")
    return c2p, codes, wavs
