"""The reward: event/order matching on hand-made posteriors, the weighted combination on real audio
with a band-energy tagger, and dpo_pairs with scorer directories of the scorer registry."""
import json
import subprocess

import numpy as np
import pytest

from ualm_tk.dpo.reward import CaptionReward, RewardError, event_match, order_match

SR = 16000
CLASSES = ["low tone", "high tone", "noise"]


def test_event_match_soft_recall_times_precision():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.6, 0.0]])  # [T=2, C=3]
    assert event_match(probs, CLASSES, ["low tone", "high tone"]) == pytest.approx((0.9 + 0.6) / 2)
    # a confidently detected extra class halves the precision
    probs2 = np.array([[0.9, 0.1, 0.8], [0.2, 0.6, 0.0]])
    assert event_match(probs2, CLASSES, ["low tone", "high tone"]) == pytest.approx(0.75 * 2 / 3)
    assert event_match(np.zeros((3, 3)), CLASSES, ["noise"]) == 0.0
    with pytest.raises(RewardError, match="not among the tagger"):
        event_match(probs, CLASSES, ["dog"])


def test_order_match_counts_ordered_pairs():
    ev = [{"class": "low tone", "onset": 0.1}, {"class": "high tone", "onset": 1.0}, {"class": "noise", "onset": 2.0}]
    p = np.zeros((6, 3))
    p[0, 0] = p[2, 1] = p[4, 2] = 0.9  # low, then high, then noise
    assert order_match(p, CLASSES, ev) == 1.0
    p2 = np.zeros((6, 3))
    p2[4, 0] = p2[2, 1] = p2[0, 2] = 0.9  # reversed: every pair wrong
    assert order_match(p2, CLASSES, ev) == 0.0
    p3 = np.zeros((6, 3))
    p3[0, 0], p3[4, 1], p3[2, 2] = 0.9, 0.9, 0.9  # low, noise, high: 2 of 3 pairs right
    assert order_match(p3, CLASSES, ev) == pytest.approx(2 / 3)
    assert order_match(p, CLASSES, ev[:1]) is None


def band_tagger(wav, sr):
    """A real (hand-built) frame tagger: 40 ms frames, energy below 1 kHz / above 1 kHz / broadband flatness."""
    x = np.asarray(wav, dtype=np.float64)[0]
    hop = sr // 25
    frames = [x[i : i + hop] for i in range(0, len(x) - hop + 1, hop)]
    out = []
    freqs = np.fft.rfftfreq(hop, 1 / sr)
    for f in frames:
        spec = np.abs(np.fft.rfft(f * np.hanning(hop))) ** 2 + 1e-12
        e = spec.sum()
        low, high = spec[freqs < 1000].sum() / e, spec[freqs >= 1000].sum() / e
        flat = np.exp(np.mean(np.log(spec))) / np.mean(spec)
        loud = float(np.sqrt(np.mean(f ** 2)) > 0.01)
        out.append([loud * low * (flat < 0.3), loud * high * (flat < 0.3), loud * min(1.0, 3 * flat)])
    return np.asarray(out), 25.0, CLASSES


def tone(freq, dur):
    t = np.arange(int(dur * SR)) / SR
    return 0.3 * np.sin(2 * np.pi * freq * t)


def test_reward_prefers_the_right_events_in_the_right_order():
    meta = {"seq": {"layout": "sequence", "events": [{"class": "low tone", "onset": 0.0, "offset": 0.5},
                                                    {"class": "high tone", "onset": 0.6, "offset": 1.0}]},
            "single": {"layout": "single", "events": [{"class": "low tone", "onset": 0.0, "offset": 1.0}]}}
    r = CaptionReward(metadata=meta, frame_posteriors=band_tagger)
    gap = np.zeros(int(0.1 * SR))
    right = np.concatenate([tone(300, 0.5), gap, tone(3000, 0.4)])[None]
    wrong = np.concatenate([tone(3000, 0.4), gap, tone(300, 0.5)])[None]
    only_low = tone(300, 1.0)[None]
    c_right, c_wrong = r.components("seq", right, SR), r.components("seq", wrong, SR)
    assert c_right["order"] == 1.0 and c_wrong["order"] == 0.0
    assert c_right["event"] > 0.9 and c_wrong["event"] > 0.9  # same events, other order
    assert r("seq", right, SR) > r("seq", only_low, SR) and r("seq", right, SR) > r("seq", wrong, SR)
    # a caption that is not a sequence has no order component; the weights renormalise
    c = r.components("single", only_low, SR)
    assert set(c) == {"event"} and r("single", only_low, SR) == pytest.approx(c["event"])


def test_reward_weights_and_errors():
    meta = {"k": {"layout": "single", "events": [{"class": "noise", "onset": 0, "offset": 1}]}}
    sim = lambda text, wav, sr: 0.5 if "noise" in text else -0.5  # noqa: E731
    r = CaptionReward({"k": "white noise"}, meta, similarity=sim, frame_posteriors=band_tagger,
                      weights=dict(similarity=3.0, event=1.0))
    noise = np.random.default_rng(0).normal(0, 0.3, (1, SR))
    c = r.components("k", noise, SR)
    assert r.combine(c) == pytest.approx((3 * 0.5 + c["event"]) / 4)
    with pytest.raises(RewardError, match="no caption text"):
        r("missing", noise, SR)
    with pytest.raises(RewardError, match=r"\[1,L\]"):
        r("k", noise[0], SR)
    with pytest.raises(ValueError, match="unknown reward weight"):
        CaptionReward({"k": "x"}, similarity=sim, weights={"clap": 1})
    with pytest.raises(ValueError, match="needs a similarity scorer and/or a tagger"):
        CaptionReward({"k": "x"})


def test_dpo_pairs_with_scorer_dirs(candidates, dpo_corpus, tmp_path, python_exe, subprocess_env):
    """dpo_pairs loads a tagger and a text–audio scorer from component dirs (untrained: plumbing only)."""
    import torch

    from ualm_tk.bin.dpo_pairs import main as dpo_pairs
    from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file
    from ualm_tk.scoring.models import ClapMini, Tagger, save_scorer
    from ualm_tk.scoring.models.clap_mini import SPECIALS

    torch.manual_seed(0)
    # default sizes: the scorers' size knobs belong to their registry and may change
    save_scorer(Tagger(class_names=["tone", "speech"]).eval(), tmp_path / "tagger")
    words = sorted({w for t in read_kaldi_file(dpo_corpus["data_dir"] / "text").values() for w in t.split()})
    save_scorer(ClapMini(vocab=list(SPECIALS) + words).eval(), tmp_path / "clap")
    meta = {}
    for i, utt in enumerate(sorted(read_kaldi_file(dpo_corpus["data_dir"] / "text"))):
        ev = [{"class": "tone", "onset": 0.0, "offset": 0.1}, {"class": "speech", "onset": 0.1, "offset": 0.2}]
        meta[utt] = json.dumps({"layout": "sequence" if i % 2 else "single", "events": ev[: 1 + i % 2]})
    write_kaldi_file(tmp_path / "metadata", meta)
    out = tmp_path / "pairs"
    dpo_pairs(["--candidates_dir", *map(str, candidates["dirs"]), "--data_json", candidates["data_json"],
               "--clap_dir", str(tmp_path / "clap"), "--tagger_dir", str(tmp_path / "tagger"),
               "--metadata", str(tmp_path / "metadata"), "--output_dir", str(out)])
    comps = json.loads((out / "reward_components.json").read_text())
    rewards = {k: float(v) for k, v in read_kaldi_file(out / "rewards").items()}
    assert set(comps) == set(rewards) and len(rewards) > 10
    for c, parts in comps.items():
        assert {"similarity", "event"} <= set(parts) and -1 <= parts["similarity"] <= 1
        assert rewards[c] == pytest.approx(sum(parts.values()) / len(parts), abs=1e-5)
    assert any("order" in p for p in comps.values())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["counts"]["pairs"] > 0 and (out / "chosen" / "data.json").is_file()
    # --score_only + --compare_rewards: the same candidates against themselves win half
    p = subprocess.run(
        [python_exe, "-m", "ualm_tk.bin.dpo_pairs", "--candidates_dir", *map(str, candidates["dirs"]), "--data_json",
         candidates["data_json"], "--rewards", str(out / "rewards"), "--score_only", "--compare_rewards",
         str(out / "rewards"), "--output_dir", str(tmp_path / "self")],
        capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads((tmp_path / "self" / "stats.json").read_text())
    assert s["compare"]["win_rate"] == 0.5 and "counts" not in s
    assert not (tmp_path / "self" / "pairs.json").exists()
