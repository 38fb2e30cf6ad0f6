#!/usr/bin/env python3
"""Evaluate a codec on held-out clips against the naive coder; codebook usage and perplexity.

    python -m ualm_tk.bin.codec_evaluate --codec_dir exp/codec_mini/codec \
        --wav_scp dump/audio/test/wav.scp --out_dir exp/codec_mini/eval_test [--num_plots 3]

Writes ``out_dir/RESULTS.md`` (tables), ``out_dir/results.json`` and
``out_dir/images/spec_<utt>.png`` (original / codec / naive coder spectrograms).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--codec_dir", required=True)
    p.add_argument("--wav_scp", required=True, help="held-out clips")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--resample", type=str2bool, default=False)
    p.add_argument("--num_plots", type=int, default=3)
    p.add_argument("--max_utts", type=int, default=None, help="evaluate the first N keys only")
    p.add_argument("--partial_codebooks", type=int, nargs="*", default=[1, 2, 4],
                   help="also score decoding from the first K' codebooks")
    p.add_argument("--naive_bits", type=int, nargs="+", default=[8, 6, 4, 3, 2])
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.codec import codec_name
    from ualm_tk.codec.cli import run_with_codec
    from ualm_tk.codec.evaluation import evaluate_codec

    res = run_with_codec("codec_evaluate", args.codec_dir, args.num_threads, lambda codec: evaluate_codec(
        codec, Path(args.wav_scp), Path(args.out_dir), args.resample, args.partial_codebooks,
        args.naive_bits, args.num_plots, args.max_utts, codec_label=codec_name(codec)))
    print((Path(args.out_dir) / "RESULTS.md").read_text())
    logging.info("evaluated %d clips", res["num_utterances"])


if __name__ == "__main__":
    main()
