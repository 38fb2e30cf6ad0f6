"""PESQ / STOI / ViSQOL on a real speech recording (asterisk prompt, 8 kHz) and its noisy copies."""
from pathlib import Path

import numpy as np
import pytest

from ualm_tk.audio.io import load_audio
from ualm_tk.scoring.metrics import quality

SPEECH = Path("/usr/share/asterisk/sounds/en/agent-newlocation.wav")  # 3.3 s, 8 kHz, one female voice


@pytest.fixture(scope="module")
def speech():
    if not SPEECH.is_file():
        pytest.skip(f"{SPEECH} is not installed (tools/install_system.sh)")
    wav, sr = load_audio(SPEECH)
    return wav, sr


def _noisy(wav, snr_db, seed=0):
    noise = np.random.default_rng(seed).standard_normal(wav.shape).astype(np.float32)
    scale = np.sqrt((wav ** 2).mean() / (noise ** 2).mean() / 10 ** (snr_db / 10))
    return wav + scale * noise


def test_pesq_is_maximal_for_identical_signals_and_falls_with_noise(speech):
    wav, sr = speech
    same = quality.pesq_wb(wav, wav, sr)
    assert same > 4.5  # wide-band PESQ tops out at 4.64
    scores = [quality.pesq_wb(wav, _noisy(wav, snr), sr) for snr in (30, 10, 0)]
    assert same > scores[0] > scores[1] > scores[2]
    assert scores[2] < 2.0


def test_stoi_is_one_for_identical_signals_and_falls_with_noise(speech):
    wav, sr = speech
    assert quality.stoi(wav, wav, sr) == pytest.approx(1.0, abs=1e-6)
    scores = [quality.stoi(wav, _noisy(wav, snr), sr) for snr in (10, 0, -10)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert quality.stoi(wav, _noisy(wav, 0), sr, extended=True) < quality.stoi(wav, _noisy(wav, 10), sr, extended=True)


def test_visqol_speech_runs_offline_and_ranks_noise(speech):
    wav, sr = speech
    same = quality.visqol(wav, wav, sr, mode="speech")
    noisy = quality.visqol(wav, _noisy(wav, 5), sr, mode="speech")
    assert same == pytest.approx(5.0, abs=0.05)
    assert 1.0 <= noisy < same - 0.5


def test_quality_errors_are_clear(speech):
    wav, sr = speech
    with pytest.raises(quality.QualityMetricError, match="at least 0.25 s"):
        quality.pesq_wb(wav[:, :800], wav[:, :800], sr)
    with pytest.raises(quality.QualityMetricError, match="PESQ failed"):
        quality.pesq_wb(np.zeros_like(wav), wav, sr)
    with pytest.raises(quality.QualityMetricError, match="reference is silent"):
        quality.stoi(np.zeros_like(wav), wav, sr)
    with pytest.raises(ValueError, match="ViSQOL mode"):
        quality.visqol(wav, wav, sr, mode="music")


def test_describe_records_protocol():
    r = quality.describe("ViSQOL", {"a": 4.0, "b": 3.0}, mode="audio")
    assert r.sample_rate == 48000 and "audio mode" in r.backbone and r.value == 3.5
    assert r.direction == "higher is better" and r.details["std"] == 0.5
