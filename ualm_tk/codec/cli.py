"""What every codec command does around its own work: threads, denormals, loading, clear errors."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from ualm_tk.codec.abs_codec import AbsCodec

T = TypeVar("T")


def run_with_codec(prog: str, codec_dir: str, num_threads: int, work: Callable[[AbsCodec], T],
                   device: str = "cpu") -> T:
    """Load the codec from ``codec_dir`` and return ``work(codec)``; a data or directory error
    exits with ``<prog>: <message>`` (non-zero) instead of a traceback."""
    import torch

    from ualm_tk.codec import load_codec
    from ualm_tk.codec.scp_ops import CodecDataError
    from ualm_tk.utils.component_dir import ComponentDirError

    torch.set_num_threads(num_threads)
    torch.set_flush_denormal(True)  # trained weights hold denormals: ~1.5x slower without
    try:
        return work(load_codec(codec_dir, device=device))
    except (CodecDataError, ComponentDirError, FileNotFoundError, ValueError) as e:
        sys.exit(f"{prog}: {e}")
