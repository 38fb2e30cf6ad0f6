"""Label-preserving waveform augmentation for the encoder's supervised pre-training (stage 5a).

Two transforms that change how a recording sounds without changing what the corpus's question
labels say about it (event classes, their order and count, pitch, tempo, noise colour):

* ``shift_max_s``: a random stretch of silence ``[0, shift_max_s]`` s before the clip, so the
  encoder does not tie a class to where the recording starts;
* ``eq_db``: a random smooth equaliser, a gain curve of ``±eq_db`` dB interpolated over 6
  log-spaced frequencies (50 Hz to Nyquist), applied in the frequency domain; the peak level is
  kept. With ``eq_db: 4`` it tilts a spectrum by 0.4 dB per octave in the median draw and by under 2
  in any (tested), against the 3 dB per octave that separate neighbouring noise colours.

Shapes: ``wav [L]`` float32 -> ``[L']`` float32 (``L' >= L``). Seeded by the caller's generator,
so an interrupted training resumes with the same augmented batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQ_POINTS = 6
EQ_LOW_HZ = 50.0


@dataclass(frozen=True)
class WavAugment:
    sample_rate: int
    shift_max_s: float = 0.0
    eq_db: float = 0.0

    def __post_init__(self):
        if self.shift_max_s < 0 or self.eq_db < 0:
            raise ValueError(f"augment: shift_max_s and eq_db must be >= 0, got {self.shift_max_s}, {self.eq_db}")

    @property
    def active(self) -> bool:
        return self.shift_max_s > 0 or self.eq_db > 0

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = wav.astype(np.float32, copy=False)
        if self.eq_db > 0:
            out = random_eq(out, self.sample_rate, self.eq_db, rng)
        if self.shift_max_s > 0:
            n = int(rng.integers(0, int(self.shift_max_s * self.sample_rate) + 1))
            out = np.concatenate([np.zeros(n, np.float32), out])
        return out


def eq_curve_db(freqs: np.ndarray, sample_rate: int, gains_db: np.ndarray) -> np.ndarray:
    """Gains ``[EQ_POINTS]`` (dB) at log-spaced knots from 50 Hz to Nyquist -> the curve at ``freqs [F]`` (Hz),
    linear in log frequency between knots (flat below 50 Hz)."""
    knots = np.geomspace(EQ_LOW_HZ, sample_rate / 2, EQ_POINTS)  # [6]
    return np.interp(np.log(np.maximum(freqs, EQ_LOW_HZ)), np.log(knots), gains_db)  # [F]


def random_eq(wav: np.ndarray, sample_rate: int, max_db: float, rng: np.random.Generator) -> np.ndarray:
    """``wav [L]`` through a random smooth gain curve (±``max_db`` dB), peak level kept."""
    spec = np.fft.rfft(wav.astype(np.float64))  # [L//2+1]
    freqs = np.fft.rfftfreq(len(wav), 1.0 / sample_rate)  # [L//2+1]
    curve_db = eq_curve_db(freqs, sample_rate, rng.uniform(-max_db, max_db, EQ_POINTS))  # [L//2+1]
    out = np.fft.irfft(spec * 10.0 ** (curve_db / 20.0), n=len(wav))
    peak_in, peak_out = float(np.abs(wav).max()), float(np.abs(out).max())
    if peak_out > 0:
        out *= peak_in / peak_out
    return out.astype(np.float32)
