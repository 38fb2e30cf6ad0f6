"""check_audio: one reason per kind of unusable clip, in the documented order."""
import math

import numpy as np
import pytest

from ualm_tk.audio.checks import check_audio, peak_dbfs, reason_category

SR = 16000


def sig(dur, amp=0.5, channels=1):
    t = np.arange(int(SR * dur)) / SR
    return np.tile(amp * np.sin(2 * np.pi * 300 * t), (channels, 1)).astype(np.float32)


def check(wav, **kw):
    args = dict(min_dur=0.5, max_dur=30.0, silence_db=-60.0)
    args.update(kw)
    return check_audio(wav, SR, **args)


def test_good_clip_passes():
    assert check(sig(1.0)) is None
    assert check(sig(1.0, channels=2)) is None


def test_each_reason():
    assert check(np.zeros((1, 0), np.float32)) == "zero length"
    x = sig(1.0)
    x[0, 5] = np.nan
    x[0, 7] = np.inf
    assert check(x) == "contains NaN/Inf (2 of 16000 samples)"
    assert check(np.zeros((2, SR), np.float32)) == "silent (peak -inf dBFS < -60 dBFS)"
    assert check(sig(1.0, amp=10 ** (-70 / 20))) == "silent (peak -70.0 dBFS < -60 dBFS)"
    assert check(sig(0.12)) == "too short (0.12 s < 0.5 s)"
    assert check(sig(2.0), max_dur=1.5) == "too long (2.00 s > 1.5 s)"


def test_silence_uses_the_loudest_channel_and_can_be_disabled():
    x = np.zeros((2, SR), np.float32)
    x[1] = sig(1.0, amp=0.01)[0]  # -40 dBFS on one channel only
    assert check(x) is None
    assert check(np.zeros((1, SR), np.float32), silence_db=None) is None
    assert check(sig(1.0, amp=0.01), silence_db=-30) == "silent (peak -40.0 dBFS < -30 dBFS)"


def test_order_of_checks():
    # a short silent clip is reported as silent; a short clip with NaN as NaN
    assert check(np.zeros((1, 100), np.float32)).startswith("silent")
    x = np.zeros((1, 100), np.float32)
    x[0, 0] = np.nan
    assert check(x).startswith("contains NaN/Inf")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"wav \[C, L\]"):
        check_audio(np.zeros(10, np.float32), SR)
    with pytest.raises(ValueError, match="sample rate"):
        check_audio(np.zeros((1, 10), np.float32), 0)


def test_peak_and_categories():
    assert math.isclose(peak_dbfs(np.array([[0.5, -1.0]])), 0.0, abs_tol=1e-9)
    assert peak_dbfs(np.zeros((1, 3))) == float("-inf")
    assert reason_category("too short (0.12 s < 0.5 s)") == "too short"
    assert reason_category("missing file: /a/b.wav") == "missing file"
    assert reason_category("unreadable: Format not recognised.") == "unreadable"
    assert reason_category("something else (detail)") == "something else"
