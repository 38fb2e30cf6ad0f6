"""Build the whole corpus: plan, render in parallel, write the Kaldi-style data dirs.

Outputs (see local/data.sh for the contract)::

    <corpus_dir>/wav/<utt>.wav                      48 kHz masters
    <data_dir>/{train,valid,test}/{wav.scp,text,utt2spk,utt2category,metadata,rich_caption}
    <data_dir>/{train,valid,test}/qa/{question,answer,qtype,qa2utt}
    <data_dir>/{train,valid,test}/text_only/{question,answer,solution,qtype,problem_id}
    <data_dir>/{heldout.json,qtypes.json,corpus_stats.md}
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from ualm_tk.data.kaldi_files import write_kaldi_file

from . import describe, qa, text_problems
from . import vocab as V
from .compose import render_clip
from .inventory import default_repo_root, load_asterisk_prompts, load_effects
from .plan import DRUMS_CLASS, SPEECH_CLASS, SPLITS, Planner
from .stats import corpus_stats

logger = logging.getLogger(__name__)
MAX_REPLACEMENTS = 3


def _render_all(specs: List[Dict], wav_dir: Path, nj: int) -> List[Dict]:
    jobs = [(s, str(wav_dir)) for s in specs]
    bar = dict(total=len(jobs), desc="rendering clips", unit="clip", mininterval=5.0, file=sys.stderr)
    if nj <= 1:
        return [render_clip(j) for j in tqdm(jobs, **bar)]
    with multiprocessing.get_context("fork").Pool(nj) as pool:
        return list(tqdm(pool.imap(render_clip, jobs, chunksize=4), **bar))


def _all_classes(planner: Planner) -> List[str]:
    classes = {SPEECH_CLASS, DRUMS_CLASS, *V.INSTRUMENTS, *planner.effect_labels}
    classes |= {f"{w} tone" for w in V.WAVEFORMS} | {f"{w} sweep" for w in V.WAVEFORMS}
    classes |= {f"{c} noise" for c in V.NOISE_COLOURS}
    return sorted(classes)


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def build_corpus(corpus_dir: Path, data_dir: Path, num_clips: int, seed: int, nj: int,
                 text_problems_per_clip: int = 8, train_clips: Optional[int] = None) -> Dict:
    t0 = time.time()
    corpus_dir, data_dir = Path(corpus_dir).resolve(), Path(data_dir).resolve()
    wav_dir = corpus_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    planner = Planner(seed, load_asterisk_prompts(), load_effects(default_repo_root()))
    specs = planner.plan(num_clips, train_clips)
    logger.info("planned %d clips: %s", len(specs), dict(Counter(s["split"] for s in specs)))
    planned = {s["utt"] for s in specs}
    for f in sorted(wav_dir.glob("mini-*.wav")):
        if f.stem not in planned:  # left over from a run with other options
            f.unlink()

    results = _render_all(specs, wav_dir, nj)
    by_utt = {s["utt"]: s for s in specs}
    replaced, dropped = [], []
    for i, r in enumerate(results):
        attempt = 0
        while not r["ok"] and attempt < MAX_REPLACEMENTS:
            attempt += 1
            logger.warning("%s failed (%s); replacing it (attempt %d)", r["utt"], r["reason"], attempt)
            replaced.append(f"{r['utt']}: {r['reason']}")
            spec = planner.replacement(by_utt[r["utt"]], attempt)
            by_utt[r["utt"]] = spec
            r = render_clip((spec, str(wav_dir)))
        if not r["ok"]:
            logger.warning("%s dropped after %d replacements: %s", r["utt"], attempt, r["reason"])
            dropped.append(f"{r['utt']}: {r['reason']}")
        results[i] = r

    all_classes = _all_classes(planner)
    per_split: Dict[str, Dict[str, Dict[str, str]]] = {s: defaultdict(dict) for s in SPLITS}
    kept: Dict[str, List[Dict]] = {s: [] for s in SPLITS}
    for r in results:
        if not r["ok"]:
            continue
        spec = by_utt[r["utt"]]
        split, utt, layout = spec["split"], r["utt"], spec["layout"]
        events = sorted(r["events"], key=lambda e: (e["onset"], e["offset"]))
        d = per_split[split]
        d["wav.scp"][utt] = r["path"]
        d["text"][utt] = describe.caption(layout, events, spec["style"])
        d["utt2spk"][utt] = utt
        d["utt2category"][utt] = spec["category"]
        sources = []
        for e in events:
            if e["source"] not in sources:
                sources.append(e["source"])
        meta = {"duration": r["duration"], "sample_rate": V.SAMPLE_RATE, "channels": r["channels"],
                "events": events, "layout": layout, "category": spec["category"],
                "source": " + ".join(sources), "peak": r["peak"], "rms_db": r["rms_db"]}
        d["metadata"][utt] = _json(meta)
        d["rich_caption"][utt] = describe.rich_caption(layout, events)
        for j, (qt, q, a) in enumerate(qa.clip_qa(layout, events, random.Random(f"{seed}:{utt}:qa"))):
            k = f"{utt}-q{j:02d}"
            d["qa/question"][k], d["qa/answer"][k], d["qa/qtype"][k], d["qa/qa2utt"][k] = q, a, qt, utt
        kept[split].append(meta)

    for split in SPLITS:
        d = per_split[split]
        # text problems are cheap (no audio): the training split gets text_problems_per_clip per clip, the
        # held-out splits one per clip; operand tuples never cross splits (text_problems.split_of)
        n_text = max(1, len(d["text"])) * (text_problems_per_clip if split == "train" else 1)
        for p in text_problems.make_problems(seed, split, n_text):
            k = p["key"]
            d["text_only/question"][k], d["text_only/answer"][k] = p["question"], p["answer"]
            d["text_only/solution"][k] = p["solution"]  # worked solution: the LM's thinking before the answer
            d["text_only/qtype"][k], d["text_only/problem_id"][k] = p["qtype"], p["ident"]
        for name, entries in d.items():
            write_kaldi_file(data_dir / split / name, entries)

    (data_dir / "heldout.json").write_text(_json_pretty(planner.heldout.to_json()), encoding="utf-8")
    cat = qa.qtypes_catalogue(all_classes, planner.effect_labels)
    cat["_text_only"] = {k: {"categorical": False, "answers": None, "description": v, "answer_kind": "number"}
                         for k, v in text_problems.QTYPES.items()}
    (data_dir / "qtypes.json").write_text(_json_pretty(cat), encoding="utf-8")
    wall = time.time() - t0
    stats = corpus_stats(per_split, kept, wall, nj, replaced, dropped)
    (data_dir / "corpus_stats.md").write_text(stats, encoding="utf-8")
    return {"stats": stats, "wall_s": wall, "replaced": replaced, "dropped": dropped}


def _json_pretty(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=1) + "\n"
