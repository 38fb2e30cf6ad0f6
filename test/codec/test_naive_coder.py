"""The naive mu-law coder: honest bitrate, lengths, quality grows with bitrate."""

from __future__ import annotations

import numpy as np

from ualm_tk.scoring.naive_coder import NaiveCoder, configs_at_bitrate
from ualm_tk.scoring.reconstruction import si_sdr


def test_bitrate_is_rate_times_bits_and_at_least_the_target():
    for c in configs_at_bitrate(3200):
        assert c.bitrate == c.coded_rate * c.bits >= 3200
        assert c.bitrate < 3200 + 50 * c.bits  # the smallest 50 Hz step above the target
    assert NaiveCoder(8000, 8).bitrate == 64000


def test_roundtrip_keeps_length_and_codes_fit_the_bits():
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.5 * np.sin(2 * np.pi * 150 * t))[None].astype(np.float32)  # [1, L]
    c = NaiveCoder(800, 4)
    codes = c.encode(wav, sr)
    assert codes.shape == (1, 800) and codes.min() >= 0 and codes.max() <= 15
    assert c.roundtrip(wav, sr).shape == wav.shape
    # a 150 Hz tone survives an 800 Hz coder; more bits -> better
    assert si_sdr(wav, NaiveCoder(800, 8).roundtrip(wav, sr)) > si_sdr(wav, NaiveCoder(800, 2).roundtrip(wav, sr)) > 0


def test_content_above_the_coded_nyquist_is_lost():
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.5 * np.sin(2 * np.pi * 3000 * t))[None].astype(np.float32)
    out = NaiveCoder(1600, 8).roundtrip(wav, sr)
    assert np.abs(out).max() < 0.05
