#!/usr/bin/env python3
"""Decode codec codes (codes.scp) to wav files.

    python -m ualm_tk.bin.codec_decode --codec_dir exp/codec_mini/codec \
        --codes_scp dump/codes/test/codes.scp --out_dir exp/codec_mini/decode_test [--num_codebooks K']

Writes ``out_dir/wav/<utt>.wav`` (16-bit PCM at the codec's rate, ``T * hop`` samples) and
``out_dir/wav.scp``. ``--num_codebooks`` decodes from the first K' codebooks only.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--codec_dir", required=True)
    p.add_argument("--codes_scp", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_codebooks", type=int, default=None, help="decode from the first K' codebooks")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.codec.cli import run_with_codec
    from ualm_tk.codec.scp_ops import decode_scp

    n = run_with_codec("codec_decode", args.codec_dir, args.num_threads, lambda codec: decode_scp(
        codec, Path(args.codes_scp), Path(args.out_dir), args.num_codebooks, args.device), device=args.device)
    logging.info("decoded %d utterances into %s", n, args.out_dir)


if __name__ == "__main__":
    main()
