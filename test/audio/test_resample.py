"""Resampling quality (length, pass band, aliasing) and the channel policy."""
import numpy as np
import pytest

from ualm_tk.audio.resample import apply_channel_policy, resample, resampled_length


def sine(sr, freq, dur=1.0, amp=0.5):
    t = np.arange(int(sr * dur)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]  # [1, L]


def level_db(x, sr, freq):
    """Level of the ``freq`` component of ``x [L]`` in dB (Hann-windowed DFT)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w)) / (w.sum() / 2)
    bins = np.fft.rfftfreq(len(x), 1 / sr)
    near = np.abs(bins - freq) < 5
    return 20 * np.log10(spec[near].max() + 1e-12)


@pytest.mark.parametrize("orig", [8000, 11025, 22050, 24000, 44100, 48000, 96000])
@pytest.mark.parametrize("length", [1, 999, 48000, 48007])
def test_output_length_formula(orig, length):
    x = np.random.default_rng(0).standard_normal((2, length)).astype(np.float32) * 0.1
    y = resample(x, orig, 16000)
    assert y.shape == (2, resampled_length(length, orig, 16000))
    assert abs(y.shape[1] - length * 16000 / orig) < 1


def test_pass_band_kept_and_alias_suppressed():
    # 1 kHz passes unchanged; 12 kHz (above the new Nyquist, would alias to 4 kHz) is removed
    x = sine(48000, 1000) + sine(48000, 12000)
    y = resample(x, 48000, 16000)[0]
    mid = y[800:-800]
    assert abs(level_db(mid, 16000, 1000) - 20 * np.log10(0.5)) < 0.1
    assert level_db(mid, 16000, 4000) < -90


def test_same_rate_is_identity_and_bad_rates_raise():
    x = sine(16000, 440)
    assert resample(x, 16000, 16000) is x
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


def test_channel_policy():
    x = np.stack([np.ones(4), -np.ones(4) * 0.5]).astype(np.float32)  # [2, 4]
    mono = apply_channel_policy(x, "mono")
    assert mono.shape == (1, 4) and np.allclose(mono, 0.25) and mono.dtype == np.float32
    assert apply_channel_policy(x, "keep") is x
    with pytest.raises(ValueError, match="unknown channel policy 'first'"):
        apply_channel_policy(x, "first")
