"""Helpers shared by the audio_encoder tests (tiny local Whisper checkpoints, test audio)."""
from pathlib import Path

import numpy as np
import torch

SR = 16000


def save_tiny_whisper(out_dir: Path, chunk_length: int, with_lm_head: bool = True, encoder_layers: int = 2) -> Path:
    """A random Whisper (d_model 32, 80 mel bins) + feature extractor with a ``chunk_length`` s window."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperModel

    mel_frames = chunk_length * SR // 160
    cfg = WhisperConfig(
        vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=encoder_layers, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=mel_frames // 2, max_target_positions=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    torch.manual_seed(1234)
    model = (WhisperForConditionalGeneration if with_lm_head else WhisperModel)(cfg)
    model.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=SR, chunk_length=chunk_length).save_pretrained(out_dir)
    return out_dir


# registry name -> conf (given the tiny Whisper dir); every registered encoder must appear here
ENCODER_CONFS = {
    "mel_transformer": lambda d: {"size": "tiny", "dropout": 0.0},
    "whisper": lambda d: {"model_dir": str(d)},
    "mel_transformer_qa": lambda d: {"size": "tiny", "dropout": 0.0, "num_answers": [2, 3], "num_event_classes": 2},
}


def tone(num_samples: int, freq: float = 440.0, seed: int = 0, amp: float = 0.3) -> torch.Tensor:
    """A sine plus a little noise, ``[num_samples]`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(num_samples)
    return torch.from_numpy(x.astype(np.float32))


def batch(clips):
    """Right-pad 1-d clips into ``wav [B,1,L]`` + ``lengths [B]``."""
    L = max(len(c) for c in clips)
    wav = torch.zeros(len(clips), 1, L)
    for i, c in enumerate(clips):
        wav[i, 0, : len(c)] = c
    return wav, torch.tensor([len(c) for c in clips])
