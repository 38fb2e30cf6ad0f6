"""score_understanding on hand-made hypothesis files; answer normalisation; the unigram code baseline."""
import json
import math

import numpy as np
import pytest

from ualm_tk.bin.score_understanding import main as score
from ualm_tk.data.task_data import TaskData
from ualm_tk.scoring.understanding import bleu1, normalize_answer
from ualm_tk.scoring.unigram import UnigramCodes

# key -> (qtype, question, reference answer)
QA = {
    "c1-q0": ("is_there_speech", "Is there speech?", "yes"),
    "c1-q1": ("event_count", "How many events?", "2"),
    "c2-q0": ("is_there_speech", "Is there speech?", "no"),
    "c2-q1": ("event_count", "How many events?", "3"),
    "c3-q0": ("is_there_speech", "Is there speech?", "no"),
    "c3-q1": ("event_count", "How many events?", "2"),
    "c4-q0": ("is_there_speech", "Is there speech?", "no"),
    "c4-q1": ("what_is_said", "What is said?", "Press one, then pound."),
}
QTYPES = {
    "is_there_speech": {"answer_kind": "yes/no", "answers": ["no", "yes"], "categorical": True},
    "event_count": {"answer_kind": "number", "answers": ["1", "2", "3"], "categorical": True},
    "what_is_said": {"answer_kind": "exact words", "answers": None, "categorical": False},
    "_text_only": {"addition": {"answer_kind": "number", "answers": None, "categorical": False}},
}


def _data_json(path, task, examples):
    """A real data.json (TaskData.save) whose meta holds the references."""
    ex = {}
    for k, meta in examples.items():
        ex[k] = {"segments": [{"role": "user", "modality": "text", "ids": [300]},
                              {"role": "assistant", "modality": "text", "ids": [301]}], "length": 7, "meta": meta}
    TaskData(task=task, token_bias={"special": 0, "text": 256}, token_list_sha256="0" * 64, num_codebooks=1,
             codebook_size=4, pattern="delay", codes_layout="TK", feat_frame_rate=25.0, examples=ex).save(path)
    return path


@pytest.fixture
def qa(tmp_path):
    meta = {k: {"qtype": q, "question": qs, "answer": a} for k, (q, qs, a) in QA.items()}
    (tmp_path / "qtypes.json").write_text(json.dumps(QTYPES))
    return _data_json(tmp_path / "data.json", "audio_qa", meta), tmp_path / "qtypes.json"


def _hyp(path, answers):
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(answers.items())))
    return path


def test_normalisation():
    assert normalize_answer("Twenty-One.") == "21"
    assert normalize_answer("  It's   A Dog! ") == "its a dog"
    assert normalize_answer("one hundred and five") == "105"
    assert normalize_answer("1,000 Hz") == "1000 hz"
    assert normalize_answer("2.5") == "2.5"
    assert normalize_answer("one two") == "1 2"
    assert normalize_answer("press 1 then pound") == normalize_answer("Press one, then pound.")
    assert bleu1("a dog barks", "a dog barks") == 1.0
    assert bleu1("a dog", "a dog barks loudly") == pytest.approx(math.exp(1 - 4 / 2))
    assert bleu1("", "a dog") == 0.0


def test_accuracy_and_chance_levels(qa, tmp_path):
    data, qtypes = qa
    hyp = {k: a for k, (_, _, a) in QA.items()}
    hyp["c1-q0"] = "No."  # wrong
    hyp["c2-q1"] = "Three"  # right after normalisation
    hyp["c3-q1"] = "3"  # wrong
    hyp["c4-q1"] = "press 1, then POUND"  # right
    out = tmp_path / "out"
    score(["--data_json", str(data), "--hyp", str(_hyp(tmp_path / "text", hyp)), "--qtypes", str(qtypes),
           "--output_dir", str(out)])
    s = json.loads((out / "scores_understanding.json").read_text())
    sp, ec, ws = (s["per_qtype"][q] for q in ("is_there_speech", "event_count", "what_is_said"))
    assert (sp["n"], sp["correct"], sp["accuracy"]) == (4, 3, 0.75)
    assert sp["chance_majority"] == 0.75 and sp["majority_answer"] == "no" and sp["chance_uniform"] == 0.5
    assert (ec["n"], ec["correct"]) == (3, 2) and ec["chance_majority"] == pytest.approx(2 / 3)
    assert ec["chance_uniform"] == pytest.approx(1 / 3)
    assert ws["accuracy"] == 1.0 and ws["categorical"] is False and ws["chance_uniform"] is None
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["num_categorical"] == 7 and s["accuracy_categorical"] == pytest.approx(5 / 7)
    md = (out / "scores_understanding.md").read_text()
    assert "| is_there_speech | yes | 4 | 75.0 | 75.0 | 50.0 |" in md
    assert "| **all categorical** | | 7 | 71.4 |" in md


def test_missing_and_extra_keys_are_errors(qa, tmp_path):
    data, qtypes = qa
    hyp = {k: a for k, (_, _, a) in QA.items()}
    del hyp["c2-q0"], hyp["c3-q1"]
    hyp["zz-extra"] = "yes"
    with pytest.raises(SystemExit) as e:
        score(["--data_json", str(data), "--hyp", str(_hyp(tmp_path / "text", hyp)), "--output_dir", str(tmp_path / "o")])
    msg = str(e.value)
    assert "2 key(s) of" in msg and "c2-q0, c3-q1" in msg and "1 hypothesis key(s) are not in" in msg and "zz-extra" in msg
    assert not (tmp_path / "o" / "scores_understanding.json").exists()
    # an explicit subset: the first M keys in byte order (what lm_decode --max_examples M decodes)
    first3 = {k: QA[k][2] for k in sorted(QA)[:3]}
    score(["--data_json", str(data), "--hyp", str(_hyp(tmp_path / "t3", first3)), "--output_dir", str(tmp_path / "o3"),
           "--max_examples", "3"])
    s = json.loads((tmp_path / "o3" / "scores_understanding.json").read_text())
    assert s["num_examples"] == 3 and s["accuracy"] == 1.0 and s["subset_of"] == 8
    with pytest.raises(SystemExit, match="1 hypothesis key"):
        score(["--data_json", str(data), "--hyp", str(_hyp(tmp_path / "t3", first3)), "--output_dir", str(tmp_path / "o3"),
               "--max_examples", "2"])


def test_text_only_qtypes_and_captions(tmp_path):
    data = _data_json(tmp_path / "t.json", "text_only",
                      {"t1": {"qtype": "addition", "answer": "12"}, "t2": {"qtype": "addition", "answer": "7"}})
    (tmp_path / "q.json").write_text(json.dumps(QTYPES))
    score(["--data_json", str(data), "--hyp", str(_hyp(tmp_path / "h", {"t1": "twelve", "t2": "8"})),
           "--qtypes", str(tmp_path / "q.json"), "--output_dir", str(tmp_path / "o")])
    s = json.loads((tmp_path / "o" / "scores_understanding.json").read_text())
    assert s["per_qtype"]["addition"]["accuracy"] == 0.5 and s["per_qtype"]["addition"]["categorical"] is False
    assert s["accuracy_categorical"] is None and s["accuracy"] == 0.5
    cap = _data_json(tmp_path / "c.json", "audio_to_caption", {"u1": {"caption": "A dog barks."}, "u2": {"caption": "Rain falls."}})
    score(["--data_json", str(cap), "--hyp", str(_hyp(tmp_path / "hc", {"u1": "a dog barks", "u2": "a bell"})),
           "--output_dir", str(tmp_path / "oc")])
    s = json.loads((tmp_path / "oc" / "scores_understanding.json").read_text())
    assert s["exact_match"] == 0.5 and s["bleu1"] == pytest.approx(0.5)


def test_unigram_baseline_on_known_codes():
    uni = UnigramCodes(2, 4)
    uni.add(np.array([[0, 0, 0, 1], [3, 3, 2, 2]]))  # [K=2, T=4]
    # stream 0: counts [3,1,0,0] -> p = [4,2,1,1]/8 ; stream 1: [0,0,2,2] -> [1,1,3,3]/8
    np.testing.assert_allclose(np.exp(uni.log_probs()), [[.5, .25, .125, .125], [.125, .125, .375, .375]])
    res = uni.nll([np.array([[0, 2], [2, 0]])])
    assert res["num_frames"] == 2
    assert res["per_stream"] == pytest.approx([-(math.log(.5) + math.log(.125)) / 2, -(math.log(.375) + math.log(.125)) / 2])
    assert res["mean"] == pytest.approx(sum(res["per_stream"]) / 2)
    with pytest.raises(ValueError, match=r"codes outside \[0, 4\)"):
        uni.add(np.array([[0, 4], [1, 1]]))
    with pytest.raises(ValueError, match="must be \\[K=2, T\\]"):
        uni.nll([np.zeros((3, 2), dtype=int)])
