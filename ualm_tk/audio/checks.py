"""Quality checks applied to every decoded clip before it enters the dump.

``check_audio`` returns ``None`` for a usable clip or a one-line reason. Reasons start with a
fixed category (see :data:`REASON_CATEGORIES`) so reports can count them.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

# the order in which checks run, and the prefixes the rejection report groups by
REASON_CATEGORIES = (
    "missing file",
    "unreadable",
    "bad key",
    "zero length",
    "contains NaN/Inf",
    "silent",
    "too short",
    "too long",
)


def peak_dbfs(wav: np.ndarray) -> float:
    """Peak level of ``wav [C, L]`` in dB relative to full scale (-inf for digital silence)."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0.0 else float("-inf")


def check_audio(
    wav: np.ndarray,
    sample_rate: int,
    min_dur: float = 0.0,
    max_dur: float = math.inf,
    silence_db: Optional[float] = -60.0,
) -> Optional[str]:
    """Return ``None`` if ``wav [C, L]`` is usable, else the reason it is not.

    Checks, in order: zero length, NaN/Inf samples, silence (peak below ``silence_db`` dBFS
    on every channel; ``None`` disables), shorter than ``min_dur`` s, longer than ``max_dur`` s.
    """
    if wav.ndim != 2:
        raise ValueError(f"check_audio expects wav [C, L], got shape {tuple(wav.shape)}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    length = wav.shape[1]
    if length == 0 or wav.shape[0] == 0:
        return "zero length"
    bad = ~np.isfinite(wav)
    if bad.any():
        return f"contains NaN/Inf ({int(bad.sum())} of {wav.size} samples)"
    if silence_db is not None:
        peak = peak_dbfs(wav)
        if peak < silence_db:
            return f"silent (peak {peak:.1f} dBFS < {silence_db:g} dBFS)"
    dur = length / sample_rate
    if dur < min_dur:
        return f"too short ({dur:.2f} s < {min_dur:g} s)"
    if dur > max_dur:
        return f"too long ({dur:.2f} s > {max_dur:g} s)"
    return None


def reason_category(reason: str) -> str:
    """The category a rejection reason belongs to (its known prefix, else its text up to '(' or ':')."""
    for cat in REASON_CATEGORIES:
        if reason.startswith(cat):
            return cat
    for sep in (" (", ":"):
        if sep in reason:
            reason = reason.split(sep, 1)[0]
    return reason.strip() or "unknown"
