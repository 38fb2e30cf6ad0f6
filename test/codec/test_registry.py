"""Every registered codec: shapes, restore from its directory, determinism, fewer codebooks, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from ualm_tk.codec import CodecInputError, codec_choices, load_codec, save_codec
from ualm_tk.utils.component_dir import ComponentDirError

from codec_tiny_models import build_tiny

NAMES = sorted(codec_choices.classes)


def test_registry_lists_the_three_codecs():
    assert set(NAMES) == {"mini_rvq", "espnet_gan", "xcodec"}


@pytest.fixture(scope="module", params=NAMES)
def codec_and_dir(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    codec = build_tiny(request.param, tmp)
    out = save_codec(codec, tmp / "codec")
    return request.param, codec, out


def _audio(b: int = 2, seconds: float = 1.0, sr: int = 16000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(int(seconds * sr)) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    return (tone + 0.05 * torch.randn(b, 1, t.numel(), generator=g)).float()  # [B, 1, L]


def test_properties_and_shapes(codec_and_dir):
    name, codec, _ = codec_and_dir
    assert codec.sample_rate == 16000 and codec.frame_rate == 50.0
    wav = _audio(2, 1.0)
    codes = codec.encode(wav)
    assert codes.dtype == torch.long
    assert codes.shape == (2, codec.num_codebooks, 50)
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    out = codec.decode(codes)
    assert out.shape == (2, 1, 50 * codec.hop_length)
    assert torch.isfinite(out).all()
    # a length that is not a multiple of the hop gives ceil(L / hop) frames
    odd = codec.encode(_audio(1, 0.51))
    assert odd.shape[-1] == codec.num_frames(int(0.51 * 16000)) == 26


def test_restores_from_directory_with_identical_outputs(codec_and_dir):
    name, codec, out = codec_and_dir
    restored = load_codec(out)
    assert type(restored) is type(codec)
    wav = _audio(2, 1.0)
    c1, c2 = codec.encode(wav), restored.encode(wav)
    assert torch.equal(c1, c2)
    assert torch.equal(codec.decode(c1), restored.decode(c2))
    assert restored.meta() == codec.meta()


def test_deterministic_and_batch_independent(codec_and_dir):
    _, codec, _ = codec_and_dir
    wav = _audio(3, 1.0)
    a, b = codec.encode(wav), codec.encode(wav.clone())
    assert torch.equal(a, b)
    single = codec.encode(wav[1:2])
    # batching must not change an utterance's codes (allow a rare near-tie flip)
    assert (single == a[1:2]).float().mean() > 0.99


def test_fewer_codebooks_decode(codec_and_dir):
    _, codec, _ = codec_and_dir
    codes = codec.encode(_audio(1, 1.0))
    k = codec.num_codebooks
    outs = [codec.decode(codes[:, :kk]) for kk in range(1, k + 1)]
    for o in outs:
        assert o.shape == outs[-1].shape and torch.isfinite(o).all()
    assert not torch.equal(outs[0], outs[-1])  # the extra codebooks change the output
    with pytest.raises(CodecInputError, match="codebooks"):
        codec.decode(torch.zeros(1, k + 1, 10, dtype=torch.long))


@pytest.mark.parametrize(
    "wav, message",
    [
        (torch.zeros(1, 1, 0), "empty"),
        (torch.zeros(1, 2, 16000), "2 channels"),
        (torch.zeros(16000), r"\[B, 1, L\]"),
        (torch.full((1, 1, 16000), float("nan")), "NaN"),
        (torch.zeros(1, 1, 16000, dtype=torch.long), "float"),
    ],
    ids=["empty", "stereo", "1d", "nan", "int"],
)
def test_bad_audio_is_a_clear_error(codec_and_dir, wav, message):
    _, codec, _ = codec_and_dir
    with pytest.raises(CodecInputError, match=message):
        codec.encode(wav)


def test_bad_codes_are_a_clear_error(codec_and_dir):
    _, codec, _ = codec_and_dir
    with pytest.raises(CodecInputError, match="outside"):
        codec.decode(torch.full((1, 1, 5), codec.codebook_size, dtype=torch.long))
    with pytest.raises(CodecInputError, match="integer"):
        codec.decode(torch.zeros(1, 1, 5))


def test_load_codec_errors(tmp_path, codec_and_dir):
    name, codec, out = codec_and_dir
    with pytest.raises(ComponentDirError, match="not a directory"):
        load_codec(tmp_path / "missing")
    if codec.saves_weights:
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "component.yaml").write_text((out / "component.yaml").read_text())
        with pytest.raises(ComponentDirError, match="model.pth"):
            load_codec(broken)
