"""TokenLayout: block starts, bijection, conversions, disk round trip, compatibility checks."""
import json
import random

import numpy as np
import pytest
import torch

from ualm_tk.tokens.layout import (
    TokenLayout,
    TokenLayoutError,
    TokenLayoutMismatch,
    escape_token,
    unescape_token,
)

TEXT = ["<unk>", "▁a", "▁dog", "b", "a b", "tab\there", "line\nbreak", "back\\slash", "é", "🙂", "<a0_1>"]


@pytest.fixture()
def layout():
    return TokenLayout(TEXT, num_codebooks=3, codebook_size=5)


def test_block_starts_and_sizes(layout):
    V = len(TEXT)
    assert layout.token_bias == {"special": 0, "text": 256, "audio_0": 256 + V, "audio_1": 261 + V, "audio_2": 266 + V}
    assert list(layout.token_bias) == ["special", "text", "audio_0", "audio_1", "audio_2"]
    assert layout.vocab_size == 256 + V + 15
    assert layout.stream_vocab_range(1) == (261 + V, 266 + V)
    with pytest.raises(ValueError, match="audio stream 3 out of range.*K=3"):
        layout.stream_vocab_range(3)


def test_bijection_every_id_one_token(layout):
    toks = layout.tokens
    assert len(toks) == layout.vocab_size == len(set(toks))
    for gid in range(layout.vocab_size):
        assert layout.token_id(layout.token(gid)) == gid
    assert layout.token(256 + len(TEXT) + 5 * 2 + 4) == "<a2_4>"
    # text tokens that collide with special/audio names get a unique listed name
    assert layout.token(256) == "<text:<unk>>" and layout.token(4) == "<unk>"
    assert layout.token(256 + 10) == "<text:<a0_1>>"


def test_masks_partition_the_vocab(layout):
    ids = torch.arange(layout.vocab_size)
    parts = [layout.is_special(ids), layout.is_text(ids)] + [layout.is_audio(ids, k) for k in range(3)]
    total = torch.stack(parts).long().sum(0)
    assert bool((total == 1).all())
    assert bool((layout.is_audio(ids) == (parts[2] | parts[3] | parts[4])).all())


@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_audio_round_trip_bkt_and_bsk(layout, lib):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(2, 3, 7))  # [B,K,T]
    if lib == "torch":
        codes = torch.from_numpy(codes)
    g = layout.audio_to_global(codes)  # K at dim -2
    for k in range(3):
        lo, hi = layout.stream_vocab_range(k)
        assert bool(((g[:, k] >= lo) & (g[:, k] < hi)).all())
    back = layout.global_to_audio(g)
    assert (back == codes).all()
    seq = g.transpose(0, 2, 1) if lib == "numpy" else g.transpose(1, 2)  # [B,T,K]
    expect = codes.transpose(0, 2, 1) if lib == "numpy" else codes.transpose(1, 2)
    assert (layout.global_to_audio(seq, dim=-1) == expect).all()
    single = layout.audio_to_global(codes[:, 1], stream=1)
    assert (layout.global_to_audio(single, stream=1) == codes[:, 1]).all()


def test_audio_conversion_errors(layout):
    with pytest.raises(ValueError, match=r"codes outside \[0, 5\): min 0, max 5"):
        layout.audio_to_global(torch.tensor([[0, 5]]), stream=0)
    with pytest.raises(ValueError, match="4 codebooks along dim 0, the layout has K=3"):
        layout.audio_to_global(torch.zeros(4, 2, dtype=torch.long), dim=0)
    g = layout.audio_to_global(torch.zeros(3, 2, dtype=torch.long), dim=0)
    g[2, 1] = layout.stream_start(1)  # a stream-1 code in stream 2's row
    with pytest.raises(ValueError, match=r"<a1_0>\) at index \(2, 1\) is not a code of audio stream 2"):
        layout.global_to_audio(g, dim=0)
    with pytest.raises(ValueError, match="is not in audio stream 0's block"):
        layout.global_to_audio(torch.tensor([0]), stream=0)
    with pytest.raises(ValueError, match="integer"):
        layout.audio_to_global(torch.zeros(3, 2), dim=0)


def test_text_conversion(layout):
    assert layout.text_to_global([0, 3]) == [256, 259]
    assert layout.global_to_text([256, 259]) == [0, 3]
    with pytest.raises(ValueError, match="text id 11 out of range"):
        layout.text_to_global([11])
    with pytest.raises(ValueError, match=r"id 2 \(<eos>\) is not a text token"):
        layout.global_to_text([2])


def test_escape_round_trip():
    for t in TEXT + ["", " ", "\u3000x", "\\u0041", "\x00"]:
        e = escape_token(t)
        assert not any(c.isspace() for c in e)
        assert unescape_token(e) == t


def test_write_load_round_trip(tmp_path, layout):
    layout.write(tmp_path)
    lines = (tmp_path / "token_list").read_text(encoding="utf-8").split("\n")
    assert len(lines) == layout.vocab_size + 1 and lines[-1] == ""
    assert lines[0] == "<pad>" and lines[256 + 5] == "tab\\u0009here"
    loaded = TokenLayout.load(tmp_path)
    assert loaded == layout and loaded.tokens == layout.tokens
    assert loaded.sha256() == layout.sha256()
    layout.check_compatible(loaded)


def test_ids_do_not_depend_on_json_key_order(tmp_path, layout):
    layout.write(tmp_path)
    bias = json.loads((tmp_path / "token_bias.json").read_text())
    items = list(bias.items())
    random.Random(1).shuffle(items)
    (tmp_path / "token_bias.json").write_text(json.dumps(dict(items[::-1])))
    loaded = TokenLayout.load(tmp_path)
    assert loaded.token_bias == layout.token_bias
    assert loaded.tokens == layout.tokens


def test_load_accepts_reserved_slot_but_rejects_moved_special(tmp_path, layout):
    layout.write(tmp_path)
    path = tmp_path / "token_list"
    lines = path.read_text(encoding="utf-8").split("\n")
    # an older toolkit had slot 20 still reserved: compatible (append-only)
    old = list(lines)
    old[20] = "<special_20>"
    path.write_text("\n".join(old), encoding="utf-8")
    assert TokenLayout.load(tmp_path) == layout
    # swapping two assigned specials (a key-order bug) is rejected with the line
    bad = list(lines)
    bad[2], bad[3] = bad[3], bad[2]
    path.write_text("\n".join(bad), encoding="utf-8")
    with pytest.raises(TokenLayoutError, match=r"token_list:3: special slot 2 is '<eot>' on disk but '<eos>'"):
        TokenLayout.load(tmp_path)


def test_load_rejects_inconsistent_files(tmp_path, layout):
    with pytest.raises(TokenLayoutError, match="token_list: missing"):
        TokenLayout.load(tmp_path)
    layout.write(tmp_path)
    text = (tmp_path / "token_list").read_text(encoding="utf-8")
    (tmp_path / "token_list").write_text(text[:-1], encoding="utf-8")
    with pytest.raises(TokenLayoutError, match="no newline"):
        TokenLayout.load(tmp_path)
    (tmp_path / "token_list").write_text(text + "<extra>\n", encoding="utf-8")
    with pytest.raises(TokenLayoutError, match="do not split"):
        TokenLayout.load(tmp_path)


def test_check_compatible_names_differences():
    a = TokenLayout(["x", "y"], 8, 1024)
    with pytest.raises(TokenLayoutMismatch, match="num_codebooks K: model 8, data 4"):
        a.check_compatible(TokenLayout(["x", "y"], 4, 1024), names=("model", "data"))
    with pytest.raises(TokenLayoutMismatch, match="codebook_size N: this layout 1024, the other 512"):
        a.check_compatible(TokenLayout(["x", "y"], 8, 512))
    with pytest.raises(TokenLayoutMismatch, match=r"text token 1 \(id 257\): this layout 'y', the other 'z'"):
        a.check_compatible(TokenLayout(["x", "z"], 8, 1024))
    with pytest.raises(TokenLayoutMismatch, match="text vocabulary size: this layout 2, the other 3"):
        a.check_compatible(TokenLayout(["x", "y", "z"], 8, 1024))


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="num_codebooks"):
        TokenLayout(["a"], 0, 4)
    with pytest.raises(ValueError, match="text_vocab is empty"):
        TokenLayout([], 1, 4)
    with pytest.raises(TokenLayoutError, match="listed twice"):
        TokenLayout(["a", "a"], 1, 4).tokens
