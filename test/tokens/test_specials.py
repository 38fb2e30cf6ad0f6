"""Special-token ids are fixed by code and append-only."""
import pytest

from ualm_tk.tokens import specials as sp

# Golden ids: changing any of these breaks every model and data.json written before.
GOLDEN = [
    ("<pad>", 0), ("<bos>", 1), ("<eos>", 2), ("<eot>", 3), ("<unk>", 4),
    ("<system>", 5), ("<user>", 6), ("<assistant>", 7),
    ("<text>", 8), ("<audio>", 9), ("<audio_feats>", 10),
    ("<task_caption_to_audio>", 11), ("<task_audio_to_caption>", 12), ("<task_audio_qa>", 13),
    ("<task_text_only>", 14), ("<think>", 15), ("</think>", 16),
    ("<rich_caption>", 17), ("</rich_caption>", 18), ("<critique>", 19), ("</critique>", 20),
]


def test_golden_special_ids():
    for name, gid in GOLDEN:
        assert sp.special_id(name) == gid, name
        assert sp.SPECIAL_TOKENS[gid] == name
    assert (sp.PAD, sp.BOS, sp.EOS, sp.EOT) == (0, 1, 2, 3)


def test_256_unique_slots_reserved_tail():
    assert len(sp.SPECIAL_TOKENS) == sp.NUM_SPECIAL_SLOTS == 256
    assert len(set(sp.SPECIAL_TOKENS)) == 256
    first_reserved = len(GOLDEN)
    assert sp.SPECIAL_TOKENS[first_reserved] == f"<special_{first_reserved}>"
    assert sp.SPECIAL_TOKENS[255] == "<special_255>"


def test_unknown_special_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown special token '<nope>'.*<bos>"):
        sp.special_id("<nope>")
    with pytest.raises(KeyError, match="<task_dance>"):
        sp.task_marker("dance")
