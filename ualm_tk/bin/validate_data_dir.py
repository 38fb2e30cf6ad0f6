#!/usr/bin/env python3
"""Check a Kaldi-style data directory against the ualm_tk contract; list every problem.

    python -m ualm_tk.bin.validate_data_dir data/train [--check_audio_exists true|false]

Prints each problem as ``<file>:<line>: key '<key>': <problem>`` and exits 1 if there is any;
otherwise prints ``OK: <dir>: N utterances, ..., files: ...`` and exits 0. Unknown files are
logged as warnings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from espnet2.utils.types import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Validate a Kaldi-style data directory (and its qa/, text_only/ subdirectories).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data_dir", help="data/<set> or dump/audio/<set>")
    p.add_argument(
        "--check_audio_exists", type=str2bool, default=True,
        help="check that every wav.scp path exists (relative paths: from the current directory)",
    )
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.validate import validate_data_dir

    report = validate_data_dir(args.data_dir, check_audio_exists=args.check_audio_exists)
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"FAILED: {args.data_dir}: {len(report.problems)} problem(s)")
        return 1
    print(f"OK: {report.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
