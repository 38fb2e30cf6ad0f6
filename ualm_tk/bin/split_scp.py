#!/usr/bin/env python3
"""Split a Kaldi scp into NJ contiguous, balanced, sorted parts for a JOB=1:NJ array.

    python -m ualm_tk.bin.split_scp data/train/wav.scp dump/audio/train/split 4
    # -> dump/audio/train/split/wav.1.scp ... wav.4.scp

Part sizes differ by at most one line (the first ``N mod NJ`` parts hold one more); the
input is read strictly (sorted, unique keys), so every part is sorted too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple


def split_entries(entries: List[Tuple[str, str]], nj: int) -> List[List[Tuple[str, str]]]:
    """Contiguous balanced split of ``entries`` into ``nj`` non-empty parts."""
    n = len(entries)
    if nj < 1:
        raise ValueError(f"NJ must be >= 1, got {nj}")
    if nj > n:
        raise ValueError(f"NJ={nj} is larger than the number of lines ({n}); use NJ <= {n}")
    base, extra = divmod(n, nj)
    parts, start = [], 0
    for j in range(nj):
        size = base + (1 if j < extra else 0)
        parts.append(entries[start:start + size])
        start += size
    return parts


def part_name(scp: str, job: int) -> str:
    name = Path(scp).name
    stem = name[:-4] if name.endswith(".scp") else name
    return f"{stem}.{job}.scp"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Split a Kaldi scp into NJ contiguous balanced parts.")
    p.add_argument("scp", help="input scp (sorted, unique keys)")
    p.add_argument("out_dir", help="directory for <name>.{1..NJ}.scp")
    p.add_argument("nj", type=int, help="number of parts")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file, write_kaldi_file

    try:
        entries: Dict[str, str] = read_kaldi_file(args.scp)
        parts = split_entries(list(entries.items()), args.nj)
    except (KaldiFileError, ValueError, OSError) as e:
        msg = str(e)
        logging.error("%s", msg if msg.startswith(args.scp) else f"{args.scp}: {msg}")
        return 1
    out_dir = Path(args.out_dir)
    for job, part in enumerate(parts, start=1):
        write_kaldi_file(out_dir / part_name(args.scp, job), part)
    sizes = [len(p) for p in parts]
    logging.info("%s: %d lines -> %d parts in %s (sizes %d..%d)", args.scp, len(entries), args.nj, out_dir,
                 min(sizes), max(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
