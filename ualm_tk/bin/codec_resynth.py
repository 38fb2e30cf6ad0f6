#!/usr/bin/env python3
"""Resynthesise a directory of audio through a codec (encode + decode).

    python -m ualm_tk.bin.codec_resynth --codec_dir exp/codec_mini/codec \
        --wav_scp dump/audio/train/wav.scp --out_dir dump/resynth/train [--resample true] [--num_codebooks K']

Writes ``out_dir/wav/<utt>.wav`` (same length as the input, codec sample rate, mono) and
``out_dir/wav.scp``: the (codec output, original) pairs the enhancement VAE trains on.
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
    p.add_argument("--wav_scp", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--resample", type=str2bool, default=False,
                   help="resample / mix down audio that does not match the codec")
    p.add_argument("--num_codebooks", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.codec.cli import run_with_codec
    from ualm_tk.codec.scp_ops import resynth_scp

    n = run_with_codec("codec_resynth", args.codec_dir, args.num_threads, lambda codec: resynth_scp(
        codec, Path(args.wav_scp), Path(args.out_dir), args.resample, args.num_codebooks, args.device),
        device=args.device)
    logging.info("resynthesised %d utterances into %s", n, args.out_dir)


if __name__ == "__main__":
    main()
