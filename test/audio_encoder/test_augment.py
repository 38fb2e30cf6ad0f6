"""Stage 5a's label-preserving waveform augmentation (ualm_tk.audio_encoder.augment)."""
import numpy as np
import pytest

from ualm_tk.audio_encoder.augment import WavAugment, random_eq

SR = 16000


def spectral_slope_db_per_octave(x: np.ndarray) -> float:
    """Least-squares slope of the power spectrum (dB) against log2 frequency over 100 Hz - 6 kHz."""
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    sel = (f > 100) & (f < 6000)
    return float(np.polyfit(np.log2(f[sel]), 10 * np.log10(p[sel] + 1e-20), 1)[0])


def coloured_noise(exponent: float, rng) -> np.ndarray:
    """Noise whose power falls as f^-exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(4 * SR))
    f = np.maximum(np.fft.rfftfreq(4 * SR, 1 / SR), 1.0)
    return np.fft.irfft(spec / f ** (exponent / 2)).astype(np.float32)


def test_eq_keeps_noise_colours_apart_and_the_peak_level():
    """A noise colour is a spectral tilt, 3 dB per octave between neighbours: a +-4 dB draw tilts it by less
    than 2 dB per octave, and by much less in the typical draw, so the colour classes stay learnable."""
    rng = np.random.default_rng(0)
    for exponent in (0, 1, 2):
        x = coloured_noise(exponent, rng)
        x *= 0.5 / np.abs(x).max()
        base = spectral_slope_db_per_octave(x)
        assert base == pytest.approx(-3.0 * exponent, abs=0.3)
        shifts = []
        for seed in range(40):
            y = random_eq(x, SR, 4.0, np.random.default_rng(seed))
            assert y.dtype == np.float32 and y.shape == x.shape
            assert np.abs(y).max() == pytest.approx(0.5, rel=1e-4)
            shifts.append(abs(spectral_slope_db_per_octave(y) - base))
        assert max(shifts) < 2.0 and float(np.median(shifts)) < 0.6


def test_eq_changes_the_spectrum_but_not_a_tone_frequency():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    y = random_eq(x, SR, 6.0, np.random.default_rng(3))
    px, py = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    assert int(np.argmax(py[:1000])) == int(np.argmax(px[:1000])) == 440  # 1 Hz bins
    ratio_db = 20 * np.log10(py[[440, 3000]] / px[[440, 3000]])
    assert abs(ratio_db[0] - ratio_db[1]) > 0.5  # the two partials got different gains
    assert np.allclose(random_eq(x, SR, 0.0, np.random.default_rng(3)), x, atol=1e-5)


def test_shift_prepends_silence_and_is_reproducible():
    aug = WavAugment(SR, shift_max_s=0.3)
    x = np.ones(SR // 2, np.float32)
    y = aug(x, np.random.default_rng([0, 1, 2]))
    n = len(y) - len(x)
    assert 0 <= n <= int(0.3 * SR)
    assert not y[:n].any() and np.array_equal(y[n:], x)
    assert np.array_equal(aug(x, np.random.default_rng([0, 1, 2])), y)  # same seed, same batch on resume
    assert not WavAugment(SR).active and aug.active
    with pytest.raises(ValueError, match="eq_db"):
        WavAugment(SR, eq_db=-1.0)
