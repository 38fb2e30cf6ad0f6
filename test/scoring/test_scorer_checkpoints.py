"""Local-checkpoint slots of the scorer registry (panns, passt, openl3, laion_clap): tiny stand-in
checkpoints written in each model's format are loaded, reproduce the source model's outputs, and
mismatching checkpoints fail with errors that name the offending keys."""

import json

import numpy as np
import pytest
import torch

from ualm_tk.scoring.models import CheckpointKeyError, build_scorer, load_scorer, save_scorer

SR = 16000
TINY = {
    "panns": dict(sample_rate=SR, window_size=256, hop_size=160, mel_bins=32, fmin=20.0, fmax=8000.0,
                  classes_num=5, channels=[4, 4, 8, 8, 8, 16]),
    "passt": dict(sample_rate=SR, n_mels=32, input_tdim=100, n_fft=512, win_length=400, hop_size=160,
                  fmax=7000.0, embed_dim=16, depth=1, num_heads=2, num_classes=5),
    "openl3": dict(sample_rate=SR, n_fft=512, hop_length=160, n_mels=32, channels=[4, 8, 8, 16],
                   embedding_size=16, hop_s=0.5),
}
EMB = {"panns": 16, "passt": 16, "openl3": 16}


def _wav(seconds=2.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _randomise(model):
    """Non-trivial weights and BatchNorm statistics, as a trained checkpoint would have."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point and ("running_var" in k):
                v.copy_(0.5 + torch.rand(v.shape, generator=g))
            elif v.dtype.is_floating_point and ("running_mean" in k or k.endswith("bias")):
                v.copy_(0.1 * torch.randn(v.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("name", ["panns", "passt", "openl3"])
def test_standin_checkpoint_loads_and_reproduces_outputs(name, tmp_path):
    torch.manual_seed(0)
    src = _randomise(build_scorer(name, TINY[name]))
    wrapped = {"panns": {"model": src.state_dict(), "iteration": 0},  # PANNs release format
               "passt": {"net." + k: v for k, v in src.state_dict().items()},  # hear21passt wrapper
               "openl3": {"module." + k: v for k, v in src.state_dict().items()}}[name]  # DDP prefix
    if name == "passt":  # the wrapper also stores its mel front end's buffers
        wrapped["mel.window"] = torch.hann_window(400)
    ckpt = tmp_path / f"{name}.pth"
    torch.save(wrapped, ckpt)
    loaded = build_scorer(name, dict(TINY[name], checkpoint=str(ckpt)))
    wav = _wav()
    e = loaded.embed(wav, SR)
    assert e.shape == (EMB[name],) and np.isfinite(e).all()
    np.testing.assert_allclose(e, src.embed(wav, SR), rtol=1e-4, atol=1e-5)
    if name in ("panns", "passt"):
        p, names = loaded.clip_posteriors(wav, SR)
        assert p.shape == (5,) and names == [f"class_{i}" for i in range(5)]
        np.testing.assert_allclose(p, src.clip_posteriors(wav, SR)[0], rtol=1e-4, atol=1e-6)
    else:
        frames = loaded.frame_embeddings(wav, SR)
        assert frames.shape == (1 + int(2.5 / 0.5), 16)  # centre-padded 1 s windows every 0.5 s
    # a component dir for a local-checkpoint scorer records the path, not the weights
    save_scorer(loaded, tmp_path / "dir")
    assert not (tmp_path / "dir" / "model.pth").exists()
    np.testing.assert_allclose(load_scorer(tmp_path / "dir").embed(wav, SR), e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["panns", "passt", "openl3"])
def test_bad_checkpoints_name_the_keys(name, tmp_path):
    src = build_scorer(name, TINY[name])
    sd = src.state_dict()
    victim = sorted(k for k in sd if k.endswith("weight"))[0]
    missing = {k: v for k, v in sd.items() if k != victim}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointKeyError, match=rf"missing keys \(1\): {victim.replace('.', '[.]')}"):
        build_scorer(name, dict(TINY[name], checkpoint=str(tmp_path / "missing.pth")))
    extra = dict(sd, **{"decoder.extra.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointKeyError, match=r"unexpected keys \(1\): decoder[.]extra[.]weight"):
        build_scorer(name, dict(TINY[name], checkpoint=str(tmp_path / "extra.pth")))
    bigger = {"panns": dict(classes_num=7), "passt": dict(num_classes=7), "openl3": dict(channels=[4, 8, 8, 32],
                                                                                        embedding_size=32)}[name]
    torch.save(sd, tmp_path / "ok.pth")
    with pytest.raises(CheckpointKeyError, match="shape mismatches"):
        build_scorer(name, dict(TINY[name], **bigger, checkpoint=str(tmp_path / "ok.pth")))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_scorer(name, dict(TINY[name], checkpoint=str(tmp_path / "nope.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointKeyError, match="not a readable torch checkpoint"):
        build_scorer(name, dict(TINY[name], checkpoint=str(tmp_path / "junk.pth")))


def _b2u():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    """A tiny random LAION-CLAP in Hugging Face format (config, safetensors, feature extractor, byte-level tokenizer)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer
    d = tmp_path_factory.mktemp("clap")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in _b2u():
        vocab.setdefault(c, len(vocab))
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizer(str(d / "vocab.json"), str(d / "merges.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, projection_dim=16, max_position_embeddings=600),
        audio_config=dict(hidden_size=64, depths=[1, 1], num_attention_heads=[2, 4], patch_embeds_hidden_size=32,
                          spec_size=64, window_size=4, projection_dim=16, num_mel_bins=16),
        projection_dim=16)
    ClapModel(cfg).save_pretrained(str(d))
    ClapFeatureExtractor(feature_size=16, sampling_rate=SR, hop_length=160, max_length_s=2,
                         fft_window_size=400).save_pretrained(str(d))
    return d


def test_laion_clap_from_local_hf_dir(clap_dir, tmp_path):
    s = build_scorer("laion_clap", dict(model_dir=str(clap_dir)))
    assert s.sample_rate == SR and set(s.capabilities) == {"embed_audio", "embed_text"}
    wav = _wav(3.0)  # longer than max_length_s: two windows, averaged
    a, t = s.embed_audio(wav, SR), s.embed_text("a sine tone with noise")
    assert a.shape == t.shape == (16,)
    np.testing.assert_allclose([np.linalg.norm(a), np.linalg.norm(t)], 1.0, atol=1e-5)
    assert s.score("a sine tone with noise", wav, SR) == pytest.approx(float(a @ t), abs=1e-5)
    np.testing.assert_allclose(s.embed_audio(wav, SR), a, atol=1e-6)  # deterministic (no random crop)
    save_scorer(s, tmp_path / "dir")
    np.testing.assert_allclose(load_scorer(tmp_path / "dir").embed_text("a sine tone with noise"), t, atol=1e-6)


def test_laion_clap_bad_weights_name_the_keys(clap_dir, tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "bad"
    shutil.copytree(clap_dir, bad)
    sd = load_file(str(bad / "model.safetensors"))
    victim = sorted(k for k in sd if "text_projection" in k)[0]
    del sd[victim]
    save_file(sd, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointKeyError, match=victim.split(".")[-2]):
        build_scorer("laion_clap", dict(model_dir=str(bad)))
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        build_scorer("laion_clap", dict(model_dir=str(tmp_path)))
