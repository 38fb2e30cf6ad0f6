#!/usr/bin/env python3
"""Stage 2, one shard: decode, check, down-mix and resample every clip of a wav.scp.

    python -m ualm_tk.bin.format_audio --wav_scp data/train/split4/wav.1.scp \\
        --out_dir dump/audio/train/data/format.1 --fs 16000 --channels mono \\
        --min_dur 0.5 --max_dur 30 --silence_db -60 --audio_format wav

Writes ``OUT_DIR/wav/<key>.<ext>``, ``OUT_DIR/{wav.scp,utt2num_samples,master.scp,rejected}``
and ``OUT_DIR/format_params.json``. Every input key is either kept or listed in ``rejected``
with its reason; a re-run reuses valid outputs (resume after a killed job).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from espnet2.utils.types import str2bool


def _float_or_none(value: str) -> Optional[float]:
    return None if value.lower() in ("none", "null", "off") else float(value)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Format the audio of one wav.scp shard (stage 2).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--wav_scp", required=True, help="input Kaldi wav.scp (key -> audio path)")
    p.add_argument("--out_dir", required=True, help="output directory of this shard")
    p.add_argument("--fs", type=int, default=16000, help="output sample rate (Hz)")
    p.add_argument("--channels", choices=["mono", "keep"], default="mono", help="channel policy")
    p.add_argument("--min_dur", type=float, default=0.5, help="reject clips shorter than this (s)")
    p.add_argument("--max_dur", type=float, default=30.0, help="reject clips longer than this (s)")
    p.add_argument(
        "--silence_db", type=_float_or_none, default=-60.0,
        help="reject clips whose peak is below this level (dBFS); 'none' disables",
    )
    p.add_argument("--audio_format", choices=["wav", "flac"], default="wav", help="output container")
    p.add_argument("--subtype", default="PCM_16", help="libsndfile sample subtype (PCM_16, PCM_24, FLOAT)")
    p.add_argument("--resume", type=str2bool, default=True, help="reuse valid outputs of an earlier run")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads (keep 1 when running nj jobs)")
    p.add_argument("--log_every", type=int, default=100, help="progress log interval (clips) without a tty")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    import soundfile as sf
    import torch

    from ualm_tk.audio.formatter import FormatConfig, format_shard
    from ualm_tk.data.kaldi_files import KaldiFileError

    torch.set_num_threads(max(1, args.num_threads))
    try:
        config = FormatConfig(
            fs=args.fs, channels=args.channels, min_dur=args.min_dur, max_dur=args.max_dur,
            silence_db=args.silence_db, audio_format=args.audio_format, subtype=args.subtype.upper(),
        )
    except ValueError as e:
        logging.error("%s", e)
        return 2
    fmt_major = "FLAC" if args.audio_format == "flac" else "WAV"
    if not sf.check_format(fmt_major, config.subtype):
        logging.error("--subtype %s cannot be written as %s", config.subtype, args.audio_format)
        return 2
    try:
        summary = format_shard(args.wav_scp, args.out_dir, config, resume=args.resume, log_every=args.log_every)
    except (KaldiFileError, FileNotFoundError) as e:
        logging.error("%s", e)
        return 1
    logging.info("%s: %s", args.wav_scp, summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
