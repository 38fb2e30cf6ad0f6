"""Event accuracy and event-order accuracy on hand-made posteriors and real metadata."""

import numpy as np
import pytest

from ualm_tk.data.kaldi_files import KaldiFileError
from ualm_tk.scoring.metrics import KeyMismatchError
from ualm_tk.scoring.metrics.events import detect, event_metrics, load_metadata

CLASSES = ["dog", "cow", "speech", "harp"]
FR = 10.0  # frames per second


def _post(T, active):
    """probs [T, C] with class c at 0.9 over frames [a, b) and 0.05 elsewhere."""
    p = np.full((T, len(CLASSES)), 0.05)
    for c, (a, b) in active.items():
        p[a:b, CLASSES.index(c)] = 0.9
    return p, FR, CLASSES


def _meta(layout, *events):
    return {"layout": layout, "events": [{"class": c, "onset": on, "offset": off} for c, on, off in events]}


def test_detect_gives_first_crossing_in_seconds():
    p, fr, names = _post(50, {"cow": (12, 30), "harp": (40, 45)})
    assert detect(p, fr, names) == {"cow": 1.2, "harp": 4.0}
    assert detect(p, fr, names, threshold=0.95) == {}
    with pytest.raises(ValueError, match="C = 4 classes"):
        detect(p[:, :3], fr, names)


def test_event_and_order_accuracy_on_hand_made_clips():
    posts = {
        # single event, detected, plus one false detection (speech)
        "u1": _post(30, {"dog": (5, 20), "speech": (0, 3)}),
        # sequence cow -> harp, detected in the right order
        "u2": _post(50, {"cow": (2, 20), "harp": (25, 45)}),
        # sequence speech -> dog -> cow: dog detected before speech (wrong), cow missed
        "u3": _post(60, {"speech": (30, 40), "dog": (10, 20)}),
        # overlay (not a sequence): order not scored; harp missed
        "u4": _post(40, {"speech": (0, 40)}),
    }
    meta = {
        "u1": _meta("single", ("dog", 0.4, 2.0)),
        "u2": _meta("sequence", ("cow", 0.2, 2.0), ("harp", 2.5, 4.5)),
        "u3": _meta("sequence", ("speech", 0.1, 1.0), ("dog", 1.5, 2.5), ("cow", 3.0, 5.0)),
        "u4": _meta("overlay", ("speech", 0.0, 4.0), ("harp", 1.0, 3.0)),
    }
    r = event_metrics(posts, meta, backbone="tagger-x", sample_rate=16000)
    # gt events: 1 + 2 + 3 + 2 = 8; detected: dog, cow, harp, speech, dog, speech = 6
    assert r["event_recall"].value == pytest.approx(6 / 8)
    # detections: u1 {dog, speech}, u2 {cow, harp}, u3 {dog, speech}, u4 {speech}: 7, of which 6 true
    assert r["event_precision"].value == pytest.approx(6 / 7)
    # ordered pairs: u2 (cow<harp) ok; u3 (speech<dog) wrong, (speech<cow) missed, (dog<cow) missed
    assert r["event_order_accuracy"].value == pytest.approx(1 / 4)
    assert r["event_order_accuracy"].num_items == 2
    assert r["event_recall"].details["per_key"]["u3"]["missed"] == ["cow"]
    assert r["event_recall"].details["per_key"]["u1"]["false"] == ["speech"]
    for res in r.values():
        assert res.backbone == "tagger-x" and res.sample_rate == 16000 and res.direction == "higher is better"


def test_repeated_class_in_a_sequence_counts_once_at_its_first_onset():
    meta = {"k": _meta("sequence", ("speech", 0.1, 1.0), ("harp", 1.5, 2.5), ("speech", 3.0, 4.0))}
    good = event_metrics({"k": _post(50, {"speech": (1, 10), "harp": (15, 25)})}, meta, "t", None)
    assert good["event_recall"].value == 1.0 and good["event_order_accuracy"].value == 1.0
    bad = event_metrics({"k": _post(50, {"speech": (30, 40), "harp": (15, 25)})}, meta, "t", None)
    assert bad["event_order_accuracy"].value == 0.0


def test_tied_onsets_are_wrong_and_no_sequence_means_no_order_metric():
    meta = {"k": _meta("sequence", ("cow", 0.1, 1.0), ("dog", 1.5, 2.5))}
    r = event_metrics({"k": _post(30, {"cow": (5, 25), "dog": (5, 25)})}, meta, "t", None)
    assert r["event_order_accuracy"].value == 0.0
    r = event_metrics({"k": _post(30, {"cow": (5, 25)})}, {"k": _meta("single", ("cow", 0, 1))}, "t", None)
    assert "event_order_accuracy" not in r


def test_errors_name_the_key():
    meta = {"a": _meta("single", ("lion", 0, 1))}
    with pytest.raises(ValueError, match=r"key a: ground-truth class\(es\) \['lion'\]"):
        event_metrics({"a": _post(10, {})}, meta, "t", None)
    with pytest.raises(KeyMismatchError, match="missing from tagger posteriors: b"):
        event_metrics({"a": _post(10, {})}, {"a": _meta("single", ("dog", 0, 1)),
                                             "b": _meta("single", ("dog", 0, 1))}, "t", None)


def test_load_metadata_rejects_bad_lines_naming_file_line_and_key(tmp_path):
    # the recipe's own metadata files are read through load_metadata in test/recipe/test_mini_corpus.py
    bad = tmp_path / "metadata"
    bad.write_text('a {"layout": "single", "events": [{"class": "dog", "onset": 0.1, "offset": 1}]}\n'
                   'b {"layout": "single", "events": [{"class": "dog", "onset": 0.1}]}\n')
    with pytest.raises(KaldiFileError, match=r"metadata:2 \(key 'b'\): event 0 lacks 'offset'"):
        load_metadata(bad)
    bad.write_text("a {not json\n")
    with pytest.raises(KaldiFileError, match=r"metadata:1 \(key 'a'\): value is not JSON"):
        load_metadata(bad)
