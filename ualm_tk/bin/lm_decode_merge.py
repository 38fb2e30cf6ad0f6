"""Merge the shards of ``ualm_tk.bin.lm_decode`` (stage 7).

    python -m ualm_tk.bin.lm_decode_merge --output_dir exp/ualm_tiny/decode_x/audio_qa/test --nj 4

reads ``DIR/output.1 .. DIR/output.NJ`` and writes ``DIR/text`` (text tasks) or ``DIR/codes.scp``
(+ ``wav.scp``, ``wav_vae.scp`` when the shards have them). Fails naming each missing or
incomplete shard and a few of its missing keys.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

logger = logging.getLogger("ualm_tk.bin.lm_decode_merge")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="decode dir holding output.1 .. output.NJ")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.inference.batch_decode import DecodeShardError, merge_shards

    if args.nj < 1:
        raise SystemExit(f"--nj must be >= 1, got {args.nj}")
    try:
        modality, counts = merge_shards(args.output_dir, args.nj)
    except DecodeShardError as e:
        raise SystemExit(f"lm_decode_merge: {e}")
    logger.info("merged %d shards (%s outputs) into %s: %s", args.nj, modality, args.output_dir,
                ", ".join(f"{k}: {v} entries" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
