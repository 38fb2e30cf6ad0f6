#!/usr/bin/env python3
"""Write the recipe's RESULTS.md (+ results_images/*.png, results_samples/) from stage 7/8 outputs.

    python -m ualm_tk.bin.make_results --exp_dirs exp/ualm_x/decode_cfg3.0_topk20_temp0.8 \\
        --sets test --tasks audio_qa text_only caption_to_audio audio_to_caption \\
        --ceilings_root exp --audio_dump dump/audio --out RESULTS.md

``--exp_dirs`` are decode directories (``<model>/decode_<tag>``) holding ``<task>_<set>/``.
A score file that should be there and is not is an error naming it (see
:mod:`ualm_tk.scoring.results_report`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from ualm_tk.scoring.results_report import KNOWN_TASKS, ResultsInputError, collect, write_report


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--exp_dirs", nargs="+", required=True, help="decode dirs <model>/decode_<tag>")
    p.add_argument("--sets", nargs="+", required=True, help="test sets")
    p.add_argument("--tasks", nargs="+", default=list(KNOWN_TASKS), choices=KNOWN_TASKS)
    p.add_argument("--ceilings_root", default=None, help="dir holding ceilings_<set>/ (e.g. exp); none: no ceilings")
    p.add_argument("--audio_dump", default=None, help="dir holding <set>/wav.scp + text of the reference clips "
                                                       "(spectrograms and sample wavs); none: no spectrograms")
    p.add_argument("--num_samples", type=int, default=3, help="generations drawn and copied per set")
    p.add_argument("--out", default="RESULTS.md")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.num_samples < 1:
        raise SystemExit(f"make_results: --num_samples must be >= 1, got {args.num_samples}")
    try:
        sets = collect([Path(d) for d in args.exp_dirs], args.sets, args.tasks,
                       Path(args.ceilings_root) if args.ceilings_root else None)
        made = write_report(sets, Path(args.out), Path(args.audio_dump) if args.audio_dump else None,
                            args.num_samples, command="python -m ualm_tk.bin.make_results " + " ".join(
                                sys.argv[1:] if cmd is None else cmd))
    except ResultsInputError as e:
        logging.error("%s", e)
        raise SystemExit(f"make_results: {e}") from None
    logging.info("wrote %s, %d images, %d sample wavs", args.out, len(made["images"]), len(made["samples"]))


if __name__ == "__main__":
    main()
