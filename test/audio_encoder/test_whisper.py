"""The ``whisper`` encoder: a tiny random Whisper saved locally, loaded through the registry (no downloads)."""
import shutil

import pytest
import torch
import torch.nn.functional as F

from audio_encoder_testlib import SR, batch, save_tiny_whisper, tone
from ualm_tk.audio_encoder import WhisperEncoder, build_audio_encoder, load_audio_encoder, save_audio_encoder


def hf_reference(model_dir, clip):
    """What the Qwen2-Audio-style tower computes for one clip shorter than the window, by hand."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    fe = WhisperFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
    model = WhisperModel.from_pretrained(model_dir, local_files_only=True).eval()
    mel = fe([clip.numpy()], sampling_rate=SR, return_tensors="pt").input_features  # [1, 80, window]
    with torch.no_grad():
        hidden = model.encoder(mel).last_hidden_state  # [1, window/2, 32] at 50 Hz
    pooled = F.avg_pool1d(hidden.transpose(1, 2), 2, 2).transpose(1, 2)  # 25 Hz
    return pooled[0, : -(-len(clip) // 640)]


def test_round_trip_from_local_dir_matches_hf(tiny_whisper_dir, tmp_path):
    enc = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir)})
    assert isinstance(enc, WhisperEncoder) and enc.frozen and not enc.saves_weights
    assert enc.output_size == 32 and enc.frame_rate == 25.0
    clip = tone(16000, 700.0)
    feats, n = enc(clip[None, None])
    assert n.tolist() == [25]
    torch.testing.assert_close(feats[0], hf_reference(tiny_whisper_dir, clip), atol=1e-5, rtol=1e-4)
    # through a component directory: only component.yaml, pointing at the absolute model_dir
    out = save_audio_encoder(enc, tmp_path / "enc")
    assert sorted(p.name for p in out.iterdir()) == ["component.yaml"]
    back = load_audio_encoder(out)
    torch.testing.assert_close(back(clip[None, None])[0], feats, atol=0, rtol=0)


def test_clips_longer_than_the_window_are_chunked(tiny_whisper_dir):
    enc = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir)})
    assert enc.chunk_samples == 2 * SR  # the tiny checkpoint's 2 s window
    clip = tone(37920 + 2 * SR, 440.0, seed=3)  # 4.37 s: chunks of 2 s, 2 s and 0.37 s
    with torch.no_grad():
        feats, n = enc(clip[None, None])
        first, _ = enc(clip[None, None, : 2 * SR])
        second, _ = enc(clip[None, None, 2 * SR : 4 * SR])
        last, _ = enc(clip[None, None, 4 * SR :])
    assert n.tolist() == [110] and first.shape[1] == 50 and last.shape[1] == 10
    torch.testing.assert_close(feats[0], torch.cat([first[0], second[0], last[0]]), atol=1e-6, rtol=1e-5)


def test_standard_30s_window_and_whisper_model_checkpoint(tmp_path):
    """A released-style 30 s window (1500 positions), saved as a plain WhisperModel."""
    d = save_tiny_whisper(tmp_path / "w30", chunk_length=30, with_lm_head=False, encoder_layers=1)
    enc = build_audio_encoder("whisper", {"model_dir": str(d)})
    assert enc.chunk_samples == 30 * SR
    short, long_ = tone(16000, 300.0), tone(37920, 1200.0, seed=4)
    with torch.no_grad():
        feats, n = enc(*batch([long_, short]))
    assert n.tolist() == [60, 25] and feats.shape == (2, 60, 32)
    torch.testing.assert_close(feats[1, :25], hf_reference(d, short), atol=1e-5, rtol=1e-4)
    assert torch.all(feats[1, 25:] == 0)


def test_fine_tuned_whisper_travels_with_its_weights(tiny_whisper_dir, tmp_path):
    enc = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir), "freeze": False})
    assert enc.saves_weights and all(p.requires_grad for p in enc.encoder.layers.parameters())
    with torch.no_grad():
        enc.encoder.layers[0].fc1.weight.mul_(3.0)  # "training"
    clip = tone(12000)[None, None]
    with torch.no_grad():
        tuned = enc(clip)[0]
    out = save_audio_encoder(enc, tmp_path / "tuned")
    assert (out / "model.pth").is_file()
    back = load_audio_encoder(out)
    pristine = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir)})
    with torch.no_grad():
        torch.testing.assert_close(back(clip)[0], tuned, atol=0, rtol=0)
        assert (pristine(clip)[0] - tuned).abs().max() > 1e-3


def test_bad_model_dirs_are_clear_errors(tiny_whisper_dir, tmp_path):
    from transformers import WhisperFeatureExtractor

    with pytest.raises(FileNotFoundError, match="is not a directory"):
        build_audio_encoder("whisper", {"model_dir": str(tmp_path / "nowhere")})
    no_fe = tmp_path / "no_fe"
    shutil.copytree(tiny_whisper_dir, no_fe)
    (no_fe / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json is missing; save the WhisperFeatureExtractor"):
        build_audio_encoder("whisper", {"model_dir": str(no_fe)})
    WhisperFeatureExtractor(feature_size=80, chunk_length=3).save_pretrained(no_fe)
    with pytest.raises(ValueError, match="window is 300 mel frames \\(3 s\\), the encoder expects 200"):
        build_audio_encoder("whisper", {"model_dir": str(no_fe)})
    WhisperFeatureExtractor(feature_size=64, chunk_length=2).save_pretrained(no_fe)
    with pytest.raises(ValueError, match="gives 64 mel bins, the encoder takes 80"):
        build_audio_encoder("whisper", {"model_dir": str(no_fe)})
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or float16, got 'int8'"):
        build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir), "dtype": "int8"})
    with pytest.raises(ValueError, match="pool must be >= 1"):
        build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir), "pool": 0})


def test_bfloat16_weights_give_float_features_close_to_float32(tiny_whisper_dir):
    clip = tone(20000, 800.0)[None, None]
    ref, _ = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir)})(clip)
    enc = build_audio_encoder("whisper", {"model_dir": str(tiny_whisper_dir), "dtype": "bfloat16"})
    assert next(enc.encoder.parameters()).dtype == torch.bfloat16
    got, n = enc(clip)
    assert got.dtype == torch.float32 and n.tolist() == [32]
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()
