"""Naive waveform coder: low-pass + down-sample + mu-law PCM, the baseline a codec must beat.

Encoding ``wav [C, L]`` at ``sample_rate``: resample to ``coded_rate`` (windowed-sinc, which
low-passes at the new Nyquist), compand with mu-law (mu = 2**bits - 1) and quantise to
``bits`` bits per sample. Decoding expands and resamples back. The bitrate is exactly
``coded_rate * bits`` bit/s per channel (no header, no entropy coding).

:func:`configs_at_bitrate` lists the configurations whose bitrate is the smallest one
``>= target`` for each bit depth (rates rounded up to a multiple of 50 Hz), so a codec is compared at the same or a higher bitrate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from ualm_tk.audio.resample import resample


@dataclass(frozen=True)
class NaiveCoder:
    coded_rate: int  # samples per second after down-sampling
    bits: int  # bits per sample (mu-law)

    @property
    def bitrate(self) -> int:
        """Bits per second per channel."""
        return self.coded_rate * self.bits

    @property
    def name(self) -> str:
        return f"naive mu-law {self.bits} bit @ {self.coded_rate} Hz"

    def encode(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """``wav [C, L]`` float -> integer codes ``[C, L']`` in ``[0, 2**bits)``."""
        lo = resample(np.asarray(wav, dtype=np.float32), sample_rate, self.coded_rate)
        mu = 2 ** self.bits - 1
        x = np.clip(lo, -1.0, 1.0)
        y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)  # [-1, 1]
        return np.clip(np.round((y + 1) / 2 * mu), 0, mu).astype(np.int32)

    def decode(self, codes: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
        """codes ``[C, L']`` -> ``wav [C, length]`` at ``sample_rate``."""
        mu = 2 ** self.bits - 1
        y = codes.astype(np.float64) / mu * 2 - 1
        x = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
        up = resample(x.astype(np.float32), self.coded_rate, sample_rate)
        if up.shape[1] < length:
            up = np.pad(up, ((0, 0), (0, length - up.shape[1])))
        return up[:, :length]

    def roundtrip(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.decode(self.encode(wav, sample_rate), sample_rate, wav.shape[-1])


def configs_at_bitrate(
    target_bps: float, bits: Sequence[int] = (8, 6, 4, 3, 2), rate_step: int = 50
) -> List[NaiveCoder]:
    """For each bit depth, the coder with the smallest rate (a multiple of ``rate_step`` Hz, which
    keeps the resampling filters short) whose bitrate is ``>= target_bps``."""
    return [NaiveCoder(int(math.ceil(target_bps / b / rate_step) * rate_step), int(b)) for b in bits]
