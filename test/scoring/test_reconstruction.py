import numpy as np
import pytest

from ualm_tk.scoring.reconstruction import (
    log_spectral_distance,
    mel_distance,
    multires_stft_distance,
    si_sdr,
)

SR = 16000


def _tone(freq, sec=1.0, sr=SR, amp=0.5):
    t = np.arange(int(sec * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_identical_signals_are_perfect():
    x = _tone(440) + 0.01 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert si_sdr(x, x) > 100
    assert mel_distance(x, x, SR) == pytest.approx(0.0, abs=1e-9)
    assert multires_stft_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert log_spectral_distance(x, x, SR) == pytest.approx(0.0, abs=1e-9)


def test_si_sdr_is_scale_invariant_and_matches_known_noise_level():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(SR)
    n = rng.standard_normal(SR)
    n -= x * (n @ x) / (x @ x)  # orthogonal noise: SI-SDR = 10 log10(|x|^2/|n|^2) exactly
    n *= np.linalg.norm(x) / np.linalg.norm(n) / 10 ** (20 / 20)  # 20 dB below
    assert si_sdr(x, x + n) == pytest.approx(20.0, abs=0.05)
    assert si_sdr(x, 3.0 * (x + n)) == pytest.approx(20.0, abs=0.05)


def test_distances_grow_with_distortion():
    x = _tone(440)
    rng = np.random.default_rng(2)
    small = x + 0.01 * rng.standard_normal(SR)
    large = x + 0.2 * rng.standard_normal(SR)
    assert mel_distance(x, small, SR) < mel_distance(x, large, SR)
    assert multires_stft_distance(x, small) < multires_stft_distance(x, large)
    assert si_sdr(x, small) > si_sdr(x, large)


def test_lsd_band_only_sees_its_band():
    sr = 48000
    low = _tone(1000, sr=sr)
    high = _tone(12000, sr=sr, amp=0.3)
    # a low-passed copy differs from the full signal only above 8 kHz
    assert log_spectral_distance(low + high, low, sr, fmax=4000) < 1.0
    assert log_spectral_distance(low + high, low, sr, fmin=8000) > 5.0


def test_channel_broadcast_and_errors():
    x = np.stack([_tone(440), _tone(660)])
    assert si_sdr(x, x) > 100
    with pytest.raises(ValueError, match="channel mismatch"):
        si_sdr(x, np.stack([x[0], x[1], x[0]]))
    with pytest.raises(ValueError, match="empty"):
        si_sdr(np.zeros(0), np.zeros(0))
