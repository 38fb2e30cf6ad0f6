#!/usr/bin/env python3
"""Measure how far a scorer can be trusted on held-out clips; write RESULTS.md into its directory.

    python -m ualm_tk.bin.scorer_evaluate --scorer_dir exp/scorer_tagger \
        --data_dir data/test --audio_dir dump/audio/test [--out_dir DIR]

Runs every evaluation the scorer supports: tagging (exact-set accuracy, event detection accuracy
and precision, mAP, frame F1, with chance levels) for classifiers, text→audio / audio→text
retrieval recall@1/5/10 (with chance) for text–audio models. Writes ``results.json`` (all sets
evaluated so far, by set name) and ``RESULTS.md`` (all of them, the set just evaluated first)
into ``--out_dir`` (default: the scorer dir). Evaluate the codec resynthesis of the test set too
(``--audio_dir dump/vae/test --set_name test_codec``): generated audio can only be judged by a
scorer that still works on codec audio. ``--subset NAME=FILE`` (repeatable; FILE lists utt ids, first column)
reports tagging accuracy on those clips and on the rest separately, e.g. the test clips built from
parameter combinations or recordings held out of training.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scorer_dir", required=True, help="a scorer component dir (component.yaml)")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with metadata (events) and/or text")
    p.add_argument("--audio_dir", required=True, help="formatted audio dir with wav.scp")
    p.add_argument("--out_dir", default=None, help="default: --scorer_dir")
    p.add_argument("--set_name", default=None, help="label in the report (default: data_dir's name)")
    p.add_argument("--subset", action="append", default=[], metavar="NAME=FILE",
                   help="report tagging on the utt ids listed in FILE (first column) separately")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import torch

    from ualm_tk.scoring.models import load_scorer, scorer_name
    from ualm_tk.scoring.models.corpus import read_clips
    from ualm_tk.scoring.models.evaluation import evaluate_retrieval, evaluate_tagging, results_markdown

    torch.set_num_threads(args.num_threads)
    scorer = load_scorer(args.scorer_dir)
    name = scorer_name(scorer)
    caps = scorer.capabilities
    tagging = "clip_posteriors" in caps
    retrieval = "embed_text" in caps and "embed_audio" in caps
    if not (tagging or retrieval):
        raise SystemExit(f"scorer_evaluate: scorer '{name}' has neither posteriors nor text embeddings to evaluate")
    clips = read_clips(args.data_dir, args.audio_dir, need_events=tagging, need_captions=retrieval)
    subsets = {}
    for spec in args.subset:
        sub_name, sep, path = spec.partition("=")
        if not sep or not sub_name or not path:
            raise SystemExit(f"scorer_evaluate: --subset must be NAME=FILE, got {spec!r}")
        try:
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except OSError as e:
            raise SystemExit(f"scorer_evaluate: --subset {sub_name}: cannot read {path} ({e})") from e
        subsets[sub_name] = {ln.split()[0] for ln in lines if ln.strip()}
        known = {c.utt for c in clips}
        stray = sorted(subsets[sub_name] - known)
        if stray:
            raise SystemExit(f"scorer_evaluate: {path}: {len(stray)} utt ids not in {args.audio_dir}/wav.scp "
                             f"(first: '{stray[0]}')")
    set_name = args.set_name or Path(args.data_dir).name
    res = {}
    if tagging:
        res["tagging"] = evaluate_tagging(scorer, clips, subsets)
    if retrieval:
        res["retrieval"] = evaluate_retrieval(scorer, clips)
    out = Path(args.out_dir or args.scorer_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = results_markdown(name, set_name, scorer, res)
    jpath = out / "results.json"
    allres = json.loads(jpath.read_text()) if jpath.is_file() else {}
    allres[set_name] = res
    jpath.write_text(json.dumps(allres, indent=1), encoding="utf-8")
    # RESULTS.md: every set evaluated so far (e.g. test and its codec resynthesis), this one first
    others = [results_markdown(name, k, scorer, v) for k, v in allres.items() if k != set_name]
    (out / "RESULTS.md").write_text("\n".join([md] + others), encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
