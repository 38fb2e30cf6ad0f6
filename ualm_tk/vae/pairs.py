"""Training pairs for the enhancement VAE: (``wav_lo`` codec output, ``wav_hi`` master).

:class:`VAEPairPreprocessor` is the ESPnet preprocess function of the VAE task. For each
utterance it checks the pair (mono, non-empty, finite, lengths consistent with the two sample
rates — ESPnet's sound loader drops the rate, so a master at the wrong rate shows up as a
length ratio that does not fit), applies the channel policy to the master, trims both to a
common aligned length and cuts one aligned segment (random in training, the start otherwise).

Channel policy: a model with 2 output channels gets mono masters duplicated (L = R); a mono
model gets stereo masters averaged to mono.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np


class VAEPairError(ValueError):
    """A training pair is unusable; the message names the utterance and the reason."""


class VAEPairPreprocessor:
    """``{"wav_lo": [L], "wav_hi": [L'] or [L', C]}`` -> ``{"wav_lo": [N], "wav_hi": [N*r, channels]}``."""

    def __init__(
        self,
        train: bool,
        input_sample_rate: int,
        output_sample_rate: int,
        channels: int,
        segment_seconds: Optional[float],
        hop: int = 1,
        length_tolerance_seconds: float = 0.05,
        seed: Optional[int] = None,
    ):
        self.train = train
        self.in_sr = input_sample_rate
        self.out_sr = output_sample_rate
        self.channels = channels
        g = math.gcd(input_sample_rate, output_sample_rate)
        # aligned unit: step_lo input samples == step_hi output samples exactly
        self.step_lo = math.lcm(input_sample_rate // g, max(hop, 1))
        self.step_hi = self.step_lo * output_sample_rate // input_sample_rate
        self.segment_lo = None
        if segment_seconds is not None and segment_seconds > 0:
            n = int(round(segment_seconds * input_sample_rate))
            self.segment_lo = max(self.step_lo, n // self.step_lo * self.step_lo)
        self.tolerance = length_tolerance_seconds
        self.rng = np.random.default_rng(seed)

    def _check(self, uid: str, name: str, x: np.ndarray) -> None:
        if x.size == 0:
            raise VAEPairError(f"utterance {uid!r}: {name} is empty")
        if not np.isfinite(x).all():
            raise VAEPairError(
                f"utterance {uid!r}: {name} holds {int((~np.isfinite(x)).sum())} NaN/Inf samples"
            )

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for key in ("wav_lo", "wav_hi"):
            if key not in data:
                raise VAEPairError(f"utterance {uid!r}: {key} missing from the batch")
        lo = np.asarray(data["wav_lo"], dtype=np.float32)
        hi = np.asarray(data["wav_hi"], dtype=np.float32)
        self._check(uid, "wav_lo", lo)
        self._check(uid, "wav_hi", hi)
        if lo.ndim == 2 and lo.shape[1] == 1:
            lo = lo[:, 0]
        if lo.ndim != 1:
            raise VAEPairError(
                f"utterance {uid!r}: wav_lo must be mono (the codec output), got shape {lo.shape}"
            )
        hi = hi[:, None] if hi.ndim == 1 else hi  # [L', C]
        if hi.ndim != 2 or hi.shape[1] > 2:
            raise VAEPairError(f"utterance {uid!r}: wav_hi must be mono or stereo, got shape {hi.shape}")
        if hi.shape[1] != self.channels:
            hi = np.repeat(hi, 2, axis=1) if self.channels == 2 else hi.mean(axis=1, keepdims=True)
        # lengths must agree in seconds (a master at the wrong rate does not)
        dur_lo, dur_hi = len(lo) / self.in_sr, len(hi) / self.out_sr
        if abs(dur_lo - dur_hi) > max(self.tolerance, 0.01 * dur_hi):
            raise VAEPairError(
                f"utterance {uid!r}: wav_lo lasts {dur_lo:.3f} s at {self.in_sr} Hz but wav_hi "
                f"{dur_hi:.3f} s at {self.out_sr} Hz; wrong sample rate or mismatched files"
            )
        units = min(len(lo) // self.step_lo, len(hi) // self.step_hi)
        if units == 0:
            raise VAEPairError(f"utterance {uid!r}: too short ({len(lo)} samples at {self.in_sr} Hz)")
        lo, hi = lo[: units * self.step_lo], hi[: units * self.step_hi]
        if self.segment_lo is not None:
            seg_units = self.segment_lo // self.step_lo
            if units > seg_units:
                start = int(self.rng.integers(0, units - seg_units + 1)) if self.train else 0
                lo = lo[start * self.step_lo:(start + seg_units) * self.step_lo]
                hi = hi[start * self.step_hi:(start + seg_units) * self.step_hi]
            elif units < seg_units:  # zero-pad short clips so a batch has one length
                pad = seg_units - units
                lo = np.pad(lo, (0, pad * self.step_lo))
                hi = np.pad(hi, ((0, pad * self.step_hi), (0, 0)))
        out = dict(data)
        out["wav_lo"] = np.ascontiguousarray(lo)
        out["wav_hi"] = np.ascontiguousarray(hi)
        return out
