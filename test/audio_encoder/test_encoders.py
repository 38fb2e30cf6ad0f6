"""Every registered audio encoder: frame counts, padding invariance, save/restore, freezing, bad input."""
import pytest
import torch
import yaml

from audio_encoder_testlib import ENCODER_CONFS, SR, batch, tone
from ualm_tk.audio_encoder import (
    AbsAudioEncoder, AudioEncoderInputError, audio_encoder_choices, load_audio_encoder, save_audio_encoder,
)
from ualm_tk.data.task_templates import num_feat_frames, prompt_fields_for_audio
from ualm_tk.utils.component_dir import ComponentDirError, save_component

# 1 s, 2.37 s, odd counts, one sample either side of a frame boundary, a single sample
LENGTHS = [16000, 37920, 16001, 12345, 641, 639, 1]


def test_every_registered_encoder_is_exercised():
    assert set(ENCODER_CONFS) == set(audio_encoder_choices.classes)


def test_frame_counts_agree_with_task_templates(encoder_name, make_encoder):
    enc = make_encoder(encoder_name)
    assert isinstance(enc, AbsAudioEncoder)
    assert enc.sample_rate == SR and enc.frame_rate == 25.0
    wav, lengths = batch([tone(n, seed=i) for i, n in enumerate(LENGTHS)])
    with torch.no_grad():
        feats, feat_lengths = enc(wav, lengths)
    expect = [num_feat_frames(n, SR) for n in LENGTHS]
    assert expect == [25, 60, 26, 20, 2, 1, 1]
    # the number of <audio_feats> placeholders the templates write for each clip
    assert [prompt_fields_for_audio("x.wav", n, SR)["num_feat_frames"] for n in LENGTHS] == expect
    assert feat_lengths.tolist() == expect
    assert [enc.num_frames(n) for n in LENGTHS] == expect
    assert feats.shape == (len(LENGTHS), max(expect), enc.output_size)
    assert torch.isfinite(feats).all()
    for b, n in enumerate(expect):
        assert feats[b, :n].abs().sum(-1).min() > 0, f"row {b}: a valid frame is all zeros"
        assert torch.all(feats[b, n:] == 0), f"row {b}: frames past the clip are not zero"
    # without lengths the whole row is the clip
    one, one_len = enc(tone(37920)[None, None])
    assert one.shape == (1, 60, enc.output_size) and one_len.tolist() == [60]


def test_padding_invariance(encoder_name, make_encoder):
    """A clip's features do not change when it is batched with longer clips (or extra padding)."""
    enc = make_encoder(encoder_name)
    short, mid, long_ = tone(16001, 300.0, seed=1), tone(23000, 900.0, seed=2), tone(41000, 2000.0, seed=3)
    with torch.no_grad():
        alone, n_alone = enc(short[None, None])
        wav, lengths = batch([long_, short, mid])
        wav = torch.nn.functional.pad(wav, (0, 5000))  # extra padding past every clip
        together, n_together = enc(wav, lengths)
        mid_alone, _ = enc(mid[None, None])
    n = int(n_alone[0])
    assert n_together.tolist() == [65, n, 36]
    torch.testing.assert_close(together[1, :n], alone[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(together[2, :36], mid_alone[0], atol=2e-5, rtol=1e-4)
    # and the features do depend on the audio (a different clip gives different features)
    assert (together[2, :n] - alone[0]).abs().max() > 1e-2


def test_save_restore_gives_identical_outputs(encoder_name, make_encoder, tmp_path):
    enc = make_encoder(encoder_name)
    wav, lengths = batch([tone(20000, 500.0), tone(9000, 1500.0, seed=5)])
    with torch.no_grad():
        ref, ref_len = enc(wav, lengths)
    out = save_audio_encoder(enc, tmp_path / "enc", meta={"trained_on": "nothing"})
    doc = yaml.safe_load((out / "component.yaml").read_text())
    assert doc["registry"] == "audio_encoder" and doc["name"] == encoder_name
    assert doc["meta"]["frame_rate"] == 25.0 and doc["meta"]["trained_on"] == "nothing"
    assert (out / "model.pth").is_file() == enc.saves_weights
    torch.manual_seed(999)  # a different seed must not matter: the weights come from disk
    back = load_audio_encoder(out)
    assert type(back) is type(enc) and back.frozen == enc.frozen and not back.training
    with torch.no_grad():
        got, got_len = back(wav, lengths)
    assert torch.equal(got_len, ref_len)
    torch.testing.assert_close(got, ref, atol=0, rtol=0)


def test_restore_errors(tmp_path):
    with pytest.raises(ComponentDirError, match="not a directory"):
        load_audio_encoder(tmp_path / "nowhere")
    save_component(tmp_path / "codec", "codec", "mini_rvq", {}, None)
    with pytest.raises(ComponentDirError, match="holds a 'codec' component, expected a 'audio_encoder'"):
        load_audio_encoder(tmp_path / "codec")
    save_component(tmp_path / "odd", "audio_encoder", "wav2vec9", {}, None)
    with pytest.raises(ComponentDirError, match="unknown audio encoder 'wav2vec9'"):
        load_audio_encoder(tmp_path / "odd")
    save_component(tmp_path / "bad", "audio_encoder", "mel_transformer", {"size": "tiny"},
                   {"conv1.weight": torch.zeros(1)})
    with pytest.raises(ComponentDirError, match="does not match audio encoder 'mel_transformer'"):
        load_audio_encoder(tmp_path / "bad")


def test_freeze_really_freezes(encoder_name, make_encoder):
    extra = {"dropout": 0.3} if encoder_name == "mel_transformer" else {}
    enc = make_encoder(encoder_name, freeze=True, **extra)
    assert enc.frozen and all(not p.requires_grad for p in enc.parameters())
    parent = torch.nn.ModuleDict({"encoder": enc, "adapter": torch.nn.Linear(enc.output_size, 8)})
    parent.train()
    assert parent.adapter.training and not enc.training  # stays in eval: no dropout
    wav, lengths = batch([tone(16000), tone(8000, seed=2)])
    f1, n = enc(wav, lengths)
    f2, _ = enc(wav, lengths)
    assert torch.equal(f1, f2) and not f1.requires_grad
    loss = parent.adapter(f1).pow(2).mean()
    loss.backward()
    assert parent.adapter.weight.grad is not None
    assert all(p.grad is None for p in enc.parameters())


def test_unfrozen_encoder_gets_gradients(encoder_name, make_encoder):
    enc = make_encoder(encoder_name, freeze=False)
    assert not enc.frozen
    enc.train()
    feats, _ = enc(*batch([tone(12000)]))
    feats.pow(2).mean().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:4])
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize(
    "wav, lengths, match",
    [
        (torch.zeros(2, 16000), None, r"must be \[B, 1, L\], got shape \(2, 16000\)"),
        (torch.zeros(1, 2, 16000), None, r"has 2 channels"),
        (torch.zeros(1, 1, 0), None, r"audio is empty \(shape \(1, 1, 0\)\)"),
        (torch.zeros(0, 1, 100), None, r"audio is empty"),
        (torch.zeros(1, 1, 100, dtype=torch.int16), None, r"must be a float tensor"),
        (torch.zeros(2, 1, 100), torch.tensor([100, 0]), r"lengths\[1\] = 0 is outside \[1, L=100\]"),
        (torch.zeros(2, 1, 100), torch.tensor([101, 5]), r"lengths\[0\] = 101 is outside"),
        (torch.zeros(2, 1, 100), torch.tensor([100]), r"lengths must be a 1-d tensor of B=2"),
        (torch.zeros(1, 1, 100), torch.tensor([50.0]), r"integer sample counts"),
        (torch.full((1, 1, 100), float("nan")), None, r"NaN/Inf samples in row\(s\) \[0\]"),
    ],
)
def test_bad_input_is_a_clear_error(encoder_name, make_encoder, wav, lengths, match):
    enc = make_encoder(encoder_name)
    with pytest.raises(AudioEncoderInputError, match=match):
        enc(wav, lengths)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_gpu_like_on_cpu(encoder_name, make_encoder):
    enc = make_encoder(encoder_name)
    wav, lengths = batch([tone(20000, 500.0), tone(9000, 1500.0, seed=5)])
    with torch.no_grad():
        ref, ref_len = enc(wav, lengths)
        got, got_len = enc.to("cuda")(wav.cuda(), lengths)  # lengths may stay on the CPU
    assert got.device.type == "cuda" and got_len.tolist() == ref_len.tolist()
    torch.testing.assert_close(got.cpu(), ref, atol=1e-3, rtol=1e-3)


def test_mel_transformer_sizes_and_bad_conf():
    from ualm_tk.audio_encoder import PRESETS, build_audio_encoder

    sizes = {name: sum(p.numel() for p in build_audio_encoder("mel_transformer", {"size": name}).parameters())
             for name in PRESETS}
    assert sizes["tiny"] < 200_000 < sizes["mini"] < 2_000_000 < sizes["base"]
    enc = build_audio_encoder("mel_transformer", {"size": "tiny", "d_model": 48, "num_layers": 1})
    assert enc.output_size == 48 and len(enc.blocks) == 1 and enc.conf["num_heads"] == 4
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        build_audio_encoder("mel_transformer", {"size": "huge"})
    with pytest.raises(ValueError, match="d_model 50 is not divisible by num_heads 4"):
        build_audio_encoder("mel_transformer", {"d_model": 50})
    with pytest.raises(ValueError, match="sample_rate 22050 must be a multiple of 100 Hz"):
        build_audio_encoder("mel_transformer", {"sample_rate": 22050})
    assert build_audio_encoder("none") is None and build_audio_encoder(None) is None  # generation-only models
    with pytest.raises(ValueError, match="must be one of \\('mel_transformer', 'whisper', 'mel_transformer_qa', None\\): --audio_encoder wav2vec9"):
        build_audio_encoder("wav2vec9", {})


def test_hidden_layers_end_with_the_features(encoder_name, make_encoder):
    """``all_layers=True``: every hidden layer [H, B, T', D], the last one exactly the usual features."""
    enc = make_encoder(encoder_name)
    H = enc.num_hidden_layers
    assert H is not None and H >= 2
    wav, lengths = batch([tone(37920, 440.0, seed=1), tone(16001, 1200.0, seed=2)])
    with torch.no_grad():
        feats, n = enc(wav, lengths)
        layers, n_layers = enc(wav, lengths, all_layers=True)
        alone, _ = enc(wav[1:, :, :16001], all_layers=True)
    assert torch.equal(n, n_layers)
    assert layers.shape == (H, 2, int(n.max()), enc.output_size)
    torch.testing.assert_close(layers[-1], feats, atol=0, rtol=0)
    assert torch.all(layers[:, 1, int(n[1]):] == 0), "frames past the clip are not zero in some layer"
    # a clip's layers do not depend on its batch, and the layers are not copies of one another
    torch.testing.assert_close(layers[:, 1, : int(n[1])], alone[:, 0], atol=2e-5, rtol=1e-4)
    for h in range(H - 1):
        assert (layers[h, 0] - layers[h + 1, 0]).abs().max() > 1e-3, f"layers {h} and {h + 1} are identical"
