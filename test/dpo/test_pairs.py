"""Pair selection (ties, too few candidates, thresholds, determinism) and the pairs directory on disk."""
import json

import kaldiio
import numpy as np
import pytest
import torch

from ualm_tk.data.lm_dataset import LMDataset, TaskSource
from ualm_tk.data.task_data import TaskData
from ualm_tk.data.task_templates import TaskDataError
from ualm_tk.dpo.pairs import load_pairs, select_pairs, summarize, win_rate, write_pairs
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens import specials as sp


def test_best_and_worst_are_paired():
    pairs, counts = select_pairs({"p1": {"p1-cand0": 0.2, "p1-cand1": 0.9, "p1-cand2": -0.3}})
    p = pairs["p1"]
    assert (p.chosen, p.rejected) == ("p1-cand1", "p1-cand2") and p.gap == pytest.approx(1.2)
    assert counts == {"prompts": 1, "pairs": 1, "too_few": 0, "tie": 0, "small_gap": 0}


def test_ties_too_few_and_small_gaps_are_skipped_and_counted():
    rewards = {
        "a": {"a-cand0": 0.5},  # one candidate
        "b": {},  # none (every sample was empty)
        "c": {"c-cand0": 0.3, "c-cand1": 0.3, "c-cand2": 0.3},  # all equal
        "d": {"d-cand0": 0.25, "d-cand1": 0.375},  # gap 0.125 < 0.25
        "e": {"e-cand0": 0.0, "e-cand1": 0.5, "e-cand2": 0.125},  # gap 0.5: kept
        "f": {"f-cand0": 0.5, "f-cand1": 0.75},  # gap exactly the threshold (binary-exact): kept
    }
    pairs, counts = select_pairs(rewards, min_gap=0.25)
    assert sorted(pairs) == ["e", "f"]
    assert counts == {"prompts": 6, "pairs": 2, "too_few": 2, "tie": 1, "small_gap": 1}
    # without a threshold the small gap passes, the tie still does not
    pairs0, counts0 = select_pairs(rewards, min_gap=0.0)
    assert sorted(pairs0) == ["d", "e", "f"] and counts0["tie"] == 1


def test_selection_is_deterministic_and_breaks_equal_rewards_by_key():
    r = {"x-cand2": 1.0, "x-cand0": 1.0, "x-cand1": 0.0, "x-cand3": 0.0}
    orders = [dict(sorted(r.items())), dict(sorted(r.items(), reverse=True)), dict(sorted(r.items(), key=lambda kv: kv[1]))]
    got = {(select_pairs({"x": o})[0]["x"].chosen, select_pairs({"x": o})[0]["x"].rejected) for o in orders}
    assert got == {("x-cand0", "x-cand1")}


def test_bad_rewards_and_thresholds_are_errors():
    with pytest.raises(ValueError, match="non-finite reward"):
        select_pairs({"p": {"p-cand0": float("nan"), "p-cand1": 1.0}})
    with pytest.raises(ValueError, match="min_gap"):
        select_pairs({}, min_gap=-1)


def write_candidates(tmp_path, c, codes_by_cand):
    ark, scp = tmp_path / "cands" / "codes.ark", tmp_path / "cands" / "codes.scp"
    ark.parent.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}", write_function="numpy") as w:
        for k in sorted(codes_by_cand):
            w(k, codes_by_cand[k])
    return {line.split()[0]: line.split()[1] for line in scp.read_text().splitlines()}


def test_pairs_dir_round_trip_and_trains_like_caption_to_audio(dpo_corpus, tmp_path):
    c = dpo_corpus
    prompts = TaskData.load(c["data"]["caption_to_audio"])
    keys = prompts.keys()[:3]
    rng = np.random.default_rng(0)
    cand_codes = {f"{k}-cand{i}": rng.integers(0, 16, size=(3 + 2 * i, 4)).astype(np.int16) for k in keys for i in range(2)}
    refs = write_candidates(tmp_path, c, cand_codes)
    rewards = {k: {f"{k}-cand0": 0.1, f"{k}-cand1": 0.7} for k in keys}
    pairs, counts = select_pairs(rewards)
    path = write_pairs(tmp_path / "pairs", pairs, prompts, refs, counts=counts)
    pf = load_pairs(path)
    assert pf.keys() == sorted(keys) and pf.counts["pairs"] == 3
    lay, pat = c["layout"], build_pattern("delay")
    for k in keys:
        ch = pf.chosen.render(k, lay, pat)
        rj = pf.rejected.render(k, lay, pat)
        # same prompt, the candidates' codes as the assistant audio (cand1 has 5 frames, cand0 3)
        assert pf.chosen.segments(k)[-1].num_frames == 5 and pf.rejected.segments(k)[-1].num_frames == 3
        assert pf.chosen.segments(k)[:-1] == prompts.segments(k)[:-1]
        assert ch.length == pf.chosen.length(k) and rj.length == pf.rejected.length(k)
        cs, T, K = ch.segments[-1].content_start, 5, lay.num_codebooks
        seq = torch.from_numpy(ch.tokens[cs : cs + T + K - 1].copy())  # [T+K-1,K] delayed audio
        seq[T, 0] = sp.PAD  # the closing <eos> sits in stream 0's delay tail
        got = lay.global_to_audio(pat.revert(seq[None])[0], dim=0)  # [K,T]
        np.testing.assert_array_equal(got.numpy(), cand_codes[f"{k}-cand1"].T)
        assert pf.chosen.meta(k)["candidate"] == f"{k}-cand1"
    # the winners file is an ordinary caption_to_audio data.json for the CE fine-tune
    ds = LMDataset([TaskSource(str(tmp_path / "pairs" / "chosen" / "data.json"), "caption_to_audio")], lay, pat, train=False)
    assert len(ds) == 3 and ds[(0, 0)]["loss_mask"].sum() > 0
    doc = json.loads(path.read_text())
    assert doc["format"] == "ualm_dpo_pairs" and doc["pairs"][keys[0]]["reward_chosen"] == pytest.approx(0.7)


def test_pairs_errors_name_the_problem(dpo_corpus, tmp_path):
    prompts = TaskData.load(dpo_corpus["data"]["caption_to_audio"])
    k = prompts.keys()[0]
    pairs, counts = select_pairs({k: {f"{k}-cand0": 0.0, f"{k}-cand1": 1.0}})
    with pytest.raises(TaskDataError, match=f"candidate '{k}-cand1' has no codes entry"):
        write_pairs(tmp_path / "p", pairs, prompts, {f"{k}-cand0": "x.ark:1"})
    with pytest.raises(TaskDataError, match="no pairs to write"):
        write_pairs(tmp_path / "p", {}, prompts, {}, counts={"tie": 3})
    with pytest.raises(TaskDataError, match="not a DPO pairs file"):
        (tmp_path / "bad.json").write_text("{}")
        load_pairs(tmp_path / "bad.json")
    with pytest.raises(TaskDataError, match="caption_to_audio"):
        write_pairs(tmp_path / "p", pairs, TaskData.load(dpo_corpus["data"]["text_only"]), {})


def test_summary_and_win_rate():
    rewards = {"a": {"a-cand0": 0.0, "a-cand1": 1.0}, "b": {"b-cand0": 0.5}}
    pairs, _ = select_pairs(rewards)
    s = summarize(rewards, pairs)
    assert s["mean_reward"] == pytest.approx(0.5) and s["mean_best_of_n"] == pytest.approx(0.75)
    assert s["mean_gap"] == pytest.approx(1.0)
    w = win_rate({"a": 1.0, "b": 0.2, "c": 0.5}, {"a": 0.0, "b": 0.3, "c": 0.5})
    assert w["win_rate"] == pytest.approx(1.5 / 3)
    with pytest.raises(ValueError, match="different prompts"):
        win_rate({"a": 1.0}, {"b": 1.0})
