"""Retrieval metric and corpus reading of the scorer evaluation, on hand-made cases."""

import json

import numpy as np
import pytest

from ualm_tk.scoring.models.corpus import CorpusError, read_clips
from ualm_tk.scoring.models.evaluation import chance_recall, retrieval_ranks


def test_retrieval_ranks_hand_case():
    # 3 captions x 3 clips; correct pairs on the diagonal
    sim = np.array([[0.9, 0.1, 0.2],   # query 0: correct clip best -> rank 1
                    [0.8, 0.5, 0.7],   # query 1: two wrong clips above -> rank 3
                    [0.1, 0.6, 0.3]])  # query 2: one wrong clip above -> rank 2
    ranks = retrieval_ranks(sim, ["a", "b", "c"])
    assert ranks.tolist() == [1, 3, 2]
    assert [(ranks <= k).mean() for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_identical_captions_count_as_correct():
    sim = np.array([[0.2, 0.9, 0.1],   # query 0 ("x"): clip 1 also has caption "x" -> rank 1
                    [0.9, 0.2, 0.1],
                    [0.5, 0.6, 0.4]])  # query 2 ("y"): both "x" clips above -> rank 3
    assert retrieval_ranks(sim, ["x", "x", "y"]).tolist() == [1, 1, 3]


def test_chance_recall():
    assert chance_recall(list("abcd"), 1) == pytest.approx(0.25)
    assert chance_recall(list("abcd"), 2) == pytest.approx(0.5)
    # "a" twice: a random top-1 hits an "a" clip with probability 2/4; "b", "c" with 1/4
    assert chance_recall(list("aabc"), 1) == pytest.approx((0.5 + 0.5 + 0.25 + 0.25) / 4)
    assert chance_recall(list("abc"), 10) == 1.0


def _dirs(tmp_path, meta_lines, wav_ok=True):
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir(parents=True)
    audio.mkdir(parents=True)
    wav = audio / "u1.wav"
    if wav_ok:
        import soundfile as sf
        sf.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    (audio / "wav.scp").write_text(f"u1 {wav}\n")
    (data / "metadata").write_text("".join(f"u1 {m}\n" for m in meta_lines))
    return data, audio


def test_corpus_errors_name_file_and_key(tmp_path):
    data, audio = _dirs(tmp_path / "a", ['{"events": [{"class": "dog", "onset": 2.0, "offset": 1.0}]}'])
    with pytest.raises(CorpusError, match=r"metadata \(key 'u1'\): event 0 'dog' has onset 2.0 >= offset 1.0"):
        read_clips(data, audio, need_events=True)
    data, audio = _dirs(tmp_path / "b", ['{"events": [{"class": "dog"}]}'])
    with pytest.raises(CorpusError, match=r"key 'u1'.*needs 'class', 'onset', 'offset'"):
        read_clips(data, audio, need_events=True)
    data, audio = _dirs(tmp_path / "c", ["{not json"])
    with pytest.raises(CorpusError, match="not valid JSON"):
        read_clips(data, audio, need_events=True)
    data, audio = _dirs(tmp_path / "d", [json.dumps({"events": []})], wav_ok=False)
    with pytest.raises(CorpusError, match=r"wav.scp \(key 'u1'\): audio file .*u1.wav does not exist"):
        read_clips(data, audio, need_events=True)
    data, audio = _dirs(tmp_path / "e", [json.dumps({"events": []})])
    with pytest.raises(CorpusError, match="text: missing"):
        read_clips(data, audio, need_captions=True)
    clips = read_clips(data, audio, need_events=True)
    assert clips[0].utt == "u1" and clips[0].events == []
