#!/usr/bin/env python3
"""Stage 4 (codec part): encode one shard of a wav.scp into Kaldi ark/scp codes.

    python -m ualm_tk.bin.codec_tokenize --codec_dir exp/codec_mini/codec \
        --wav_scp dump/audio/train/split4/wav.1.scp --out_dir dump/codes/train/split4/1 \
        [--resample false] [--batch_size 8]

Writes ``out_dir/codes.{ark,scp}`` (int16 matrices ``[T, K]``: frames x codebooks),
``out_dir/utt2num_frames`` and ``out_dir/codes_info.json``. Deterministic: the same audio gives
the same codes whatever the batch size. Exits non-zero naming the utterance and file for audio
at another sample rate or channel count (unless ``--resample true``), empty audio or NaN samples.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--codec_dir", required=True, help="trained codec (component directory)")
    p.add_argument("--wav_scp", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--resample", type=str2bool, default=False,
                   help="resample / mix down audio that does not match the codec")
    p.add_argument("--batch_size", type=int, default=8, help="utterances of equal length per batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.codec.cli import run_with_codec
    from ualm_tk.codec.scp_ops import tokenize_scp

    if args.batch_size < 1:
        sys.exit(f"codec_tokenize: --batch_size must be >= 1, got {args.batch_size}")
    run_with_codec("codec_tokenize", args.codec_dir, args.num_threads, lambda codec: tokenize_scp(
        codec, Path(args.wav_scp), Path(args.out_dir), args.resample, args.batch_size, args.device),
        device=args.device)


if __name__ == "__main__":
    main()
