"""The pair preprocessor of the VAE task: alignment, cropping, channel policy, bad pairs."""
import numpy as np
import pytest

from ualm_tk.vae.pairs import VAEPairError, VAEPairPreprocessor


def _pre(train=True, channels=2, seconds=0.25):
    return VAEPairPreprocessor(train=train, input_sample_rate=16000, output_sample_rate=48000,
                               channels=channels, segment_seconds=seconds, hop=80, seed=0)


def _pair(n_lo=16000, hi_channels=1):
    lo = np.arange(n_lo, dtype=np.float32) / n_lo  # a ramp: position is recoverable
    hi = np.repeat(lo, 3)  # hi[3 i] == lo[i]: the same instant at 48 kHz
    if hi_channels == 2:
        hi = np.stack([hi, -hi], axis=1)  # [L', 2]
    return {"wav_lo": lo, "wav_hi": hi}


@pytest.mark.parametrize("train", [True, False])
def test_segments_are_aligned_and_fixed_length(train):
    pre = _pre(train=train)
    starts = set()
    for _ in range(5):
        out = pre("utt", _pair())
        lo, hi = out["wav_lo"], out["wav_hi"]
        assert lo.shape == (4000,) and hi.shape == (12000, 2)
        np.testing.assert_array_equal(hi[::3, 0], lo)  # same instants in both
        starts.add(float(lo[0]))
    assert (len(starts) > 1) == train  # random crops in training, the start otherwise
    if not train:
        assert starts == {0.0}


def test_channel_policy():
    mono_master = _pre(channels=2)("u", _pair(hi_channels=1))["wav_hi"]
    np.testing.assert_array_equal(mono_master[:, 0], mono_master[:, 1])  # mono master -> L = R
    stereo_to_mono = _pre(channels=1)("u", _pair(hi_channels=2))["wav_hi"]
    assert stereo_to_mono.shape == (12000, 1) and np.allclose(stereo_to_mono, 0.0)  # (x + -x) / 2
    stereo = _pre(channels=2)("u", _pair(hi_channels=2))["wav_hi"]
    np.testing.assert_array_equal(stereo[:, 0], -stereo[:, 1])


def test_short_clips_are_padded_and_whole_clips_kept():
    out = _pre(seconds=0.25)("u", _pair(n_lo=1000))
    assert out["wav_lo"].shape == (4000,) and out["wav_hi"].shape == (12000, 2)
    assert np.all(out["wav_lo"][1000:] == 0)
    whole = _pre(seconds=None)("u", _pair(n_lo=16050))
    assert whole["wav_lo"].shape == (16000,) and whole["wav_hi"].shape == (48000, 2)


def test_codec_length_slack_is_accepted():
    data = _pair(n_lo=16000)
    data["wav_lo"] = np.pad(data["wav_lo"], (0, 320))  # a codec pads to whole frames
    assert _pre(seconds=None)("u", data)["wav_lo"].shape == (16000,)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(wav_hi=d["wav_hi"][: int(len(d["wav_hi"]) * 44100 / 48000)]),
         "'utt7': wav_lo lasts 1.000 s at 16000 Hz but wav_hi 0.919 s at 48000 Hz"),
        (lambda d: d.update(wav_lo=np.zeros(0, np.float32)), "'utt7': wav_lo is empty"),
        (lambda d: d["wav_hi"].__setitem__(5, np.nan), "'utt7': wav_hi holds 1 NaN/Inf"),
        (lambda d: d.update(wav_lo=np.zeros((16000, 2), np.float32)), "'utt7': wav_lo must be mono"),
        (lambda d: d.update(wav_hi=np.zeros((48000, 3), np.float32)), "'utt7': wav_hi must be mono or stereo"),
        (lambda d: d.pop("wav_hi"), "'utt7': wav_hi missing"),
    ],
)
def test_bad_pairs_name_the_utterance(mutate, message):
    data = _pair()
    mutate(data)
    with pytest.raises(VAEPairError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _pre()("utt7", data)
