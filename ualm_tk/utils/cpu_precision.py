"""Whether bfloat16 autocast pays on this CPU, and the ``cpu_bf16`` setting that follows from it.

``cpu_bf16`` (the LM's ``model_conf`` and stage 5a's config) takes three values:

* ``auto``: bfloat16 products where the CPU computes bfloat16 natively (AVX512-BF16 or AMX on
  x86, the BF16 extension on Arm), float32 elsewhere;
* ``true``: always. Without native support oneDNN emulates bfloat16, and that is slow: on an AVX2
  AMD EPYC (2 threads) a stage-5a batch took 2.0 s instead of 0.2 s in float32, where an AVX512-BF16
  Xeon ran the LM's training step 1.6x faster than float32;
* ``false``: never.
"""

from __future__ import annotations

import functools
import logging
import platform
from typing import Union

logger = logging.getLogger(__name__)

X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CpuBf16Setting = Union[bool, str]


def native_bf16_from_cpuinfo(cpuinfo: str, machine: str) -> bool:
    """``/proc/cpuinfo`` text and ``platform.machine()`` -> does the CPU compute bfloat16 natively."""
    words = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            words.update(value.split())
    if machine.lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return any(f in words for f in X86_BF16_FLAGS)


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """This machine's answer (Linux: ``/proc/cpuinfo``; elsewhere oneDNN's own check)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return native_bf16_from_cpuinfo(f.read(), platform.machine())
    except OSError:
        pass
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_cpu_bf16(setting: CpuBf16Setting, key: str = "cpu_bf16") -> bool:
    """``auto`` / ``true`` / ``false`` (``key`` names the option in errors and logs) -> use bf16 autocast."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        use = cpu_has_native_bf16()
        logger.info("%s auto: this CPU %s bfloat16 natively: %s", key, "computes" if use else "does not compute",
                    "bf16 autocast on" if use else "float32")
        return use
    if not isinstance(setting, bool):
        raise ValueError(f"{key}: expected auto, true or false, got {setting!r}")
    if setting and not cpu_has_native_bf16():
        logger.warning("%s true on a CPU without native bfloat16 (no %s): emulated, several times slower than "
                       "float32; 'auto' would use float32 here", key, " / ".join(X86_BF16_FLAGS))
    return setting
