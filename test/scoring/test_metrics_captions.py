"""Caption metrics through pycocoevalcap (PTBTokenizer and METEOR run on the installed Java)."""
import shutil

import pytest

from ualm_tk.scoring.metrics import KeyMismatchError
from ualm_tk.scoring.metrics.captions import caption_metrics

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

REFS = {
    "a": "A dog barks twice in the distance.",
    "b": "A harp plays a rising melody at a slow tempo.",
    "c": "First a falling triangle sweep, then a harpsichord melody.",
}


def test_identical_captions_score_at_maximum():
    r = caption_metrics(dict(REFS), dict(REFS))
    for name in ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L"):
        assert r[name].value == pytest.approx(1.0, abs=1e-6), name
    assert r["METEOR"].value == pytest.approx(1.0, abs=1e-6)
    assert r["BLEU_4"].direction == "higher is better" and r["BLEU_4"].num_items == 3
    assert "SPICE" in r["CIDEr"].details["not_computed"]
    shuffled = {"a": REFS["b"], "b": REFS["c"], "c": REFS["a"]}
    wrong = caption_metrics(shuffled, dict(REFS), meteor=False)
    assert r["CIDEr"].value > 1.0 > wrong["CIDEr"].value
    assert wrong["BLEU_4"].value < 0.1


def test_hand_checked_pair():
    # tokens: hyp "a dog barks loudly" (4), ref "a dog barks" (3): 1-grams 3/4, 2-grams 2/3, BP = 1
    r = caption_metrics({"k": "A dog barks loudly."}, {"k": "a dog barks"}, meteor=False)
    assert r["BLEU_1"].value == pytest.approx(0.75, rel=1e-6)
    assert r["BLEU_2"].value == pytest.approx((0.75 * 2 / 3) ** 0.5, rel=1e-6)
    # ROUGE-L: LCS 3, P = 3/4, R = 1, beta = 1.2 -> (1 + b^2) P R / (R + b^2 P)
    b2 = 1.2 ** 2
    assert r["ROUGE_L"].value == pytest.approx((1 + b2) * 0.75 / (1 + b2 * 0.75), rel=1e-6)


def test_multiple_references_per_key():
    refs = {"k": ["a cat meows softly", "a dog barks twice outside"], "m": ["rain falls on a tin roof"]}
    r = caption_metrics({"k": "a dog barks twice outside", "m": "rain falls on a tin roof"}, refs, meteor=False)
    assert r["BLEU_4"].value == pytest.approx(1.0, abs=1e-6)
    assert r["BLEU_4"].details["num_references"] == 3
    one = caption_metrics({"k": "a dog barks twice outside", "m": "rain falls on a tin roof"},
                          {"k": "a cat meows softly", "m": "rain falls on a tin roof"}, meteor=False)
    assert one["BLEU_4"].details["per_key"]["k"] < 0.01 < r["BLEU_4"].details["per_key"]["k"]


def test_key_mismatch_and_empty_hypothesis():
    with pytest.raises(KeyMismatchError, match=r"1 key\(s\) of reference captions missing from hypothesis captions: c"):
        caption_metrics({"a": "x y", "b": "y z"}, {"a": "x", "b": "y", "c": "z"}, meteor=False)
    with pytest.raises(ValueError, match="key a: empty hypothesis"):
        caption_metrics({"a": "  "}, {"a": "x"}, meteor=False)
