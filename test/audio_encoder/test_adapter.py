"""Adapter and feature insertion: frames land exactly on the <audio_feats> placeholders, in order."""
import pytest
import soundfile as sf
import torch

from audio_encoder_testlib import SR, tone
from ualm_tk.audio_encoder import (
    AudioAdapter, FeatureInsertionError, build_audio_encoder, insert_features, pack_segments, placeholder_mask,
)
from ualm_tk.data.task_templates import make_segments, prompt_fields_for_audio, render_example
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout


@pytest.mark.parametrize("num_layers, hidden", [(1, None), (2, None), (2, 48)])
def test_adapter_maps_encoder_width_to_lm_width(num_layers, hidden):
    ad = AudioAdapter(16, 40, num_layers=num_layers, hidden_size=hidden)
    assert ad(torch.randn(3, 7, 16)).shape == (3, 7, 40)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in ad.modules())
    assert n_linear == num_layers
    with pytest.raises(FeatureInsertionError, match="features have width 8, the adapter takes 16"):
        ad(torch.randn(1, 2, 8))


def test_adapter_bad_conf():
    with pytest.raises(ValueError, match="num_layers must be 1 \\(linear\\) or 2 \\(MLP\\), got 3"):
        AudioAdapter(4, 4, num_layers=3)
    with pytest.raises(ValueError, match="hidden_size is only used with num_layers=2"):
        AudioAdapter(4, 4, num_layers=1, hidden_size=8)


def test_insert_features_writes_frames_in_order_and_nothing_else():
    B, S, D = 3, 14, 5
    embeds = torch.randn(B, S, D)
    mask = torch.zeros(B, S, dtype=torch.bool)
    mask[0, 2:5] = True  # row 0: two audio segments, 3 + 2 frames
    mask[0, 9:11] = True
    mask[1, 4:8] = True  # row 1: one segment of 4 frames; row 2: no audio
    clips = torch.randn(3, 4, D, requires_grad=True)  # [N=3 clips, T=4, D]
    clip_lengths = torch.tensor([3, 4, 2])
    feats, lengths = pack_segments(clips, clip_lengths, row_of_clip=[0, 1, 0], num_rows=B)
    assert lengths.tolist() == [5, 4, 0] and feats.shape == (B, 5, D)
    out = insert_features(embeds, mask, feats, lengths)
    expect = embeds.clone()
    expect[0, 2:5] = clips[0, :3]
    expect[0, 9:11] = clips[2, :2]
    expect[1, 4:8] = clips[1, :4]
    torch.testing.assert_close(out, expect, atol=0, rtol=0)
    assert torch.equal(embeds[~mask], out[~mask])  # other positions untouched, input not modified in place
    # gradients reach exactly the frames that were used
    out.sum().backward()
    used = torch.zeros(3, 4)
    used[0, :3] = used[1, :4] = used[2, :2] = 1
    torch.testing.assert_close(clips.grad, used[:, :, None].expand(3, 4, D))


def test_insert_features_count_mismatch_names_row_and_counts():
    embeds = torch.zeros(2, 6, 4)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1:4] = True
    mask[1, 1:3] = True
    feats = torch.ones(2, 3, 4)
    with pytest.raises(FeatureInsertionError, match="row 1: 2 <audio_feats> placeholders but 3 valid frames"):
        insert_features(embeds, mask, feats, torch.tensor([3, 3]))
    with pytest.raises(FeatureInsertionError, match=r"row 0: 3 <audio_feats> placeholders but 4 valid frames \(feats hold only 3\)"):
        insert_features(embeds, mask, feats, torch.tensor([4, 2]))
    with pytest.raises(FeatureInsertionError, match=r"feats must be \[B=2, T', D=4\], got \(2, 3, 7\)"):
        insert_features(embeds, mask, torch.ones(2, 3, 7), torch.tensor([3, 2]))
    with pytest.raises(FeatureInsertionError, match="placeholder_mask must be bool"):
        insert_features(embeds, mask.long(), feats, torch.tensor([3, 2]))
    with pytest.raises(FeatureInsertionError, match="row index 5 outside"):
        pack_segments(feats, torch.tensor([3, 2]), [0, 5], num_rows=2)


def test_rendered_example_encoder_and_insertion_agree(tmp_path):
    """A real wav -> audio_qa example rendered by the task templates -> encoder frames fill its placeholders."""
    layout = TokenLayout(["a", "b", "c"], num_codebooks=2, codebook_size=8)
    n_samples = 37921  # 2.37 s + 1 sample
    wav_path = tmp_path / "clip.wav"
    sf.write(wav_path, tone(n_samples, 523.0).numpy(), SR, subtype="PCM_16")

    def encode(text, what):
        return layout.text_to_global(["abc".index(ch) for ch in text])

    ex = {"key": "utt1", "question": "ab", "answer": "c", **prompt_fields_for_audio(str(wav_path), n_samples, SR)}
    r = render_example(make_segments("audio_qa", ex, encode), layout, build_pattern("delay"), key="utt1")
    tokens = torch.from_numpy(r.tokens)[None]  # [1, S, K]
    mask = placeholder_mask(tokens)  # [1, S]
    span = r.audio_feats[0]
    assert mask[0].nonzero()[:, 0].tolist() == list(range(span.start, span.end))

    audio, sr = sf.read(span.wav, dtype="float32")
    assert sr == span.sample_rate and len(audio) == span.num_samples
    enc = build_audio_encoder("mel_transformer", {"size": "tiny"}).eval()
    adapter = AudioAdapter(enc.output_size, 24)
    with torch.no_grad():
        feats, n = enc(torch.from_numpy(audio)[None, None])
        frames = adapter(feats)
    assert int(n[0]) == span.end - span.start == 60
    embeds = torch.nn.Embedding(layout.vocab_size, 24)(tokens[..., 0])
    out = insert_features(embeds.detach(), mask, frames, n)
    torch.testing.assert_close(out[0, span.start : span.end], frames[0])
    assert torch.equal(out[0, : span.start], embeds[0, : span.start].detach())
    assert int(tokens[0, span.start - 1, 0]) == sp.AUDIO  # the <audio> header precedes the frames


def test_batch_without_audio_and_lower_precision_embeds():
    embeds = torch.randn(2, 5, 4, dtype=torch.bfloat16)
    none = torch.zeros(2, 5, dtype=torch.bool)
    feats, lengths = pack_segments(torch.zeros(0, 3, 4), torch.zeros(0, dtype=torch.long), [], num_rows=2)
    assert lengths.tolist() == [0, 0]
    assert torch.equal(insert_features(embeds, none, feats, lengths), embeds)
    one = none.clone()
    one[1, 2] = True
    out = insert_features(embeds, one, torch.ones(2, 1, 4), torch.tensor([0, 1]))
    assert out.dtype == torch.bfloat16 and out[1, 2].tolist() == [1.0] * 4 and torch.equal(out[0], embeds[0])


def test_adapter_layer_mix_starts_at_the_mean_and_learns_the_weights():
    torch.manual_seed(0)
    ad = AudioAdapter(16, 40, num_layers=1, mix_layers=3)
    layers = torch.randn(3, 2, 7, 16)  # [H, B, T', D]
    out = ad(layers)
    assert out.shape == (2, 7, 40)
    torch.testing.assert_close(out, ad.net(layers.mean(0)))  # zero-initialised weights: the plain mean
    out[:, :, 0].sum().backward()
    assert ad.layer_weights.grad.abs().min() > 0
    with torch.no_grad():
        ad.layer_weights.copy_(torch.tensor([0.0, 0.0, 30.0]))  # (almost) all weight on the last layer
    torch.testing.assert_close(ad(layers), ad.net(layers[-1]), atol=1e-5, rtol=1e-5)
    with pytest.raises(FeatureInsertionError, match=r"mixes 3 encoder layers, so it takes \[H=3, B, T', D\], got \(2, 7, 16\)"):
        ad(layers[0])
    with pytest.raises(ValueError, match="mix_layers must be >= 1"):
        AudioAdapter(16, 40, mix_layers=0)
