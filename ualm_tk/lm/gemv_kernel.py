"""The few-row GEMV kernel of incremental decoding (``csrc/few_row_gemv.cpp``), built on first use.

``y [R, out] = x [R, in] @ w [out, in]^T`` for R <= 8 float32 rows on the CPU (the operator
``torch.ops.ualm_tk.few_row_gemv``, so profiles list it by name), the weights read once
for all rows and the output rows split over torch's intra-op threads. On the recipe machines (2
cores) torch's ``F.linear`` at one row (MKL sgemv) streams ~14 GB/s whatever the thread count; this
kernel ~29 GB/s, the rate of torch's own ``sum`` over the same weights
(``benchmarks/decode_speed.py`` measures both in one run).

The C++ source is compiled once per machine with ``torch.utils.cpp_extension`` (``-O3
-march=native -fopenmp``; ~10 s) into torch's extension cache (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``). The extension's name carries a digest of the source, the flags and
the CPU's instruction-set flags, so nodes of different CPU types sharing one home directory each get
their own build. ``tools/install_python.sh`` builds it (``python -m ualm_tk.bin.build_gemv_kernel``).

Where it cannot be built (no compiler) or ``UALM_TK_GEMV=0`` is set, :func:`few_row_gemv_kernel`
returns None after one warning and callers keep ``F.linear``; results agree to float rounding.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "few_row_gemv.cpp"
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)  # tuples: torch's load() appends to the lists it is given
MAX_ROWS = 8  # the kernel's template instances: 1..8 rows
ENV_SWITCH = "UALM_TK_GEMV"  # "0": never build or use the kernel

_lock = threading.Lock()
_state: dict = {}  # "fn": the kernel or None once decided; "error": why it is None


def _cpu_flags() -> str:
    """The instruction-set flags of this CPU (Linux /proc/cpuinfo), else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return f"{platform.machine()} {platform.processor()}"


def extension_name() -> str:
    """``ualm_few_row_gemv_<digest>``: source, flags, torch version and CPU flags."""
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
                 _cpu_flags().encode()):
        h.update(part)
    return f"ualm_few_row_gemv_{h.hexdigest()[:12]}"


def _ensure_ninja_on_path() -> None:
    """torch's extension builder runs ``ninja``; the pinned ``ninja`` package puts it beside the venv's
    Python, which is not on PATH when that Python is called by its full path."""
    if shutil.which("ninja"):
        return
    here = str(Path(sys.executable).parent)
    if (Path(here) / "ninja").exists():
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def build(verbose: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Compile (or load the cached build of) the kernel; raises when it cannot be built."""
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)  # its import warns that no CUDA runtime exists: true and irrelevant here
    try:
        from torch.utils.cpp_extension import load
    finally:
        cpp_logger.setLevel(level)

    _ensure_ninja_on_path()
    if not hasattr(torch.ops.ualm_tk, "few_row_gemv"):  # (one build per process registers the operator)
        load(name=extension_name(), sources=[str(SOURCE)], extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
             is_python_module=False, verbose=verbose)
    return torch.ops.ualm_tk.few_row_gemv


def few_row_gemv_kernel() -> Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The kernel, built on the first call; None (one warning) if it is switched off or fails to build."""
    if "fn" in _state:
        return _state["fn"]
    with _lock:
        if "fn" in _state:
            return _state["fn"]
        fn, err = None, None
        if os.environ.get(ENV_SWITCH, "1") == "0":
            err = f"{ENV_SWITCH}=0"
        else:
            t0 = time.perf_counter()
            try:
                fn = build()
                logger.debug("few-row GEMV kernel ready in %.1f s", time.perf_counter() - t0)
            except Exception as e:  # a missing compiler, headers or ninja: decoding still works, slower
                err = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        if fn is None:
            logger.warning("few-row GEMV kernel not used (%s): decoding multiplies through torch's F.linear "
                           "(about half the speed at batch 1 on 2 CPU cores)", err)
        _state["fn"], _state["error"] = fn, err
        return fn


def reset() -> None:
    """Forget the decision of :func:`few_row_gemv_kernel` (tests switch the kernel on and off)."""
    with _lock:
        _state.clear()


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """Inside the block FewRowLinear multiplies through torch (the benchmark times both paths)."""
    with _lock:
        saved = dict(_state)
        _state.update(fn=None, error="switched off")
    try:
        yield
    finally:
        with _lock:
            _state.clear()
            _state.update(saved)
