#!/usr/bin/env python3
"""Generate the mini_ualm corpus: 48 kHz masters and Kaldi-style data dirs with captions, QA.

Usage (from egs2/mini_ualm/ualm1):
    python local/make_corpus.py --corpus_dir corpus --data_dir data --num_clips 2000 --seed 0 --nj 2
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mini_corpus.build import build_corpus  # noqa: E402
from mini_corpus.plan import PlanError  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_dir", type=Path, required=True, help="where <corpus_dir>/wav/<utt>.wav go")
    p.add_argument("--data_dir", type=Path, required=True, help="where <data_dir>/{train,valid,test}/ go")
    p.add_argument("--num_clips", type=int, default=2000, help="total clips over all splits (>= 3)")
    p.add_argument("--train_clips", type=int, default=0,
                   help="training clips (0: num_clips less the 10 %% valid and 10 %% test); more adds training "
                        "clips and leaves valid, test and the default training clips unchanged")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--text_problems_per_clip", type=int, default=8,
                   help="text-only problems per training clip (held-out splits: one per clip)")
    p.add_argument("--nj", type=int, default=2, help="worker processes (output does not depend on it)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.num_clips < 3:
        get_parser().error(f"--num_clips must be >= 3, got {args.num_clips}")
    if args.train_clips < 0:
        get_parser().error(f"--train_clips must be >= 0 (0: the default split), got {args.train_clips}")
    if args.text_problems_per_clip < 1:
        get_parser().error(f"--text_problems_per_clip must be >= 1, got {args.text_problems_per_clip}")
    if args.nj < 1:
        get_parser().error(f"--nj must be >= 1, got {args.nj}")
    try:
        res = build_corpus(args.corpus_dir, args.data_dir, args.num_clips, args.seed, args.nj,
                           args.text_problems_per_clip, args.train_clips or None)
    except PlanError as e:
        logging.error("%s", e)
        return 1
    print(res["stats"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
