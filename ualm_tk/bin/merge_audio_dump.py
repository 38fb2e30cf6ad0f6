#!/usr/bin/env python3
"""Stage 2, after the shards: merge them into dump/audio/<set>/ and validate the result.

    python -m ualm_tk.bin.merge_audio_dump --data_dir data/train \\
        --parts dump/audio/train/data/format.{1..4} --out_dir dump/audio/train

Prints ``kept N of M, rejected R: by reason ...`` and writes ``rejected`` and
``rejected_report.md``. Exits 1 naming the keys when a key of the data dir is in no part,
and listing every problem when the merged directory does not validate.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Merge stage-2 shard outputs into one data directory.")
    p.add_argument("--data_dir", required=True, help="source data dir (stage 1 output), e.g. data/train")
    p.add_argument("--parts", nargs="+", required=True, help="shard output dirs of format_audio")
    p.add_argument("--out_dir", required=True, help="merged data dir, e.g. dump/audio/train")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.audio.merge_dump import MergeError, merge_audio_dump
    from ualm_tk.data.kaldi_files import KaldiFileError
    from ualm_tk.data.validate import validate_data_dir

    try:
        summary = merge_audio_dump(args.data_dir, args.parts, args.out_dir)
    except (MergeError, KaldiFileError) as e:
        logging.error("%s", e)
        return 1
    print(f"{args.data_dir} -> {args.out_dir}: {summary.line()}")
    if summary.qa_total:
        logging.info("qa: kept %d of %d questions", summary.qa_kept, summary.qa_total)
    report = validate_data_dir(args.out_dir, check_audio_exists=True)
    if report.problems:
        for problem in report.problems:
            print(problem)
        logging.error("%s: merged directory is invalid (%d problem(s))", args.out_dir, len(report.problems))
        return 1
    logging.info("OK: %s", report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
