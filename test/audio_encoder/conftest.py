"""Fixtures for the audio_encoder tests: a tiny Whisper checkpoint saved locally, one encoder per registry name."""
from pathlib import Path

import pytest
import torch

from audio_encoder_testlib import ENCODER_CONFS, save_tiny_whisper


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """2 s window (100 encoder positions at 50 Hz): clips longer than 2 s exercise chunking cheaply."""
    return save_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"), chunk_length=2)


@pytest.fixture(params=sorted(ENCODER_CONFS))
def encoder_name(request) -> str:
    return request.param


@pytest.fixture
def make_encoder(tiny_whisper_dir):
    """``make_encoder(name, **overrides)`` -> a freshly built encoder in eval mode."""
    from ualm_tk.audio_encoder import build_audio_encoder

    def make(name, **overrides):
        torch.manual_seed(0)
        conf = {**ENCODER_CONFS[name](tiny_whisper_dir), **overrides}
        return build_audio_encoder(name, conf).eval()

    return make
