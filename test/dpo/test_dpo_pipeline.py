"""Stage 6 end to end on a tiny trained model: sample candidates, score, build pairs, DPO through ESPnet.

The reward here is a real measurement of the decoded audio: closeness of its duration to 0.4 s
(the random tiny codec decodes to near silence, so level-based rewards would all tie), written as
a rewards file; the scorer-based reward is tested in test_reward.py.
"""
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ualm_tk.bin.dpo_pairs import main as dpo_pairs
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file
from ualm_tk.dpo.data import PairsDataset, collate_pairs
from ualm_tk.dpo.logprob import sequence_logprobs
from ualm_tk.models.generation import load_model_dir
from ualm_tk.models.ualm import UALMModel
from ualm_tk.patterns import build_pattern

DPO_CONF = "egs2/TEMPLATE/ualm1/conf/train_ualm_dpo_tiny.yaml"


def test_sampling_writes_codes_wavs_and_prompt_map(candidates, dpo_corpus):
    c2p, scp, wavs = {}, {}, {}
    for d in candidates["dirs"]:
        c2p.update(read_kaldi_file(d / "cand2prompt"))
        scp.update(read_kaldi_file(d / "codes.scp"))
        wavs.update(read_kaldi_file(d / "wav.scp"))
    prompts = sorted(json.loads(open(candidates["data_json"]).read())["examples"])
    assert set(c2p.values()) <= set(prompts) and len(set(c2p.values())) >= len(prompts) - 2
    assert set(c2p) == set(scp) == set(wavs)
    info = [json.loads((d / "sample_info.json").read_text()) for d in candidates["dirs"]]
    assert sum(i["prompts"] for i in info) == len(prompts)
    assert sum(i["candidates"] + i["empty"] for i in info) == 3 * len(prompts)
    import kaldiio

    for c in sorted(c2p)[:4]:
        codes = kaldiio.load_mat(scp[c])  # [T,K]
        wav, sr = sf.read(wavs[c])
        assert codes.shape[1] == 4 and 1 <= codes.shape[0] <= 20 - 3 and sr == 16000
        assert len(wav) == codes.shape[0] * 640  # the codec's hop at 25 frames/s


def test_sampling_is_seeded_per_prompt(candidates, trained, tmp_path, python_exe, subprocess_env):
    """A prompt's candidates do not depend on the sharding: job 1 of 1 on the first 2 prompts = job 1 of 2's."""
    cmd = [python_exe, "-m", "ualm_tk.bin.dpo_sample", "--model_dir", str(trained["model_dir"]), "--data_json",
           candidates["data_json"], "--num_samples", "3", "--max_steps", "20", "--num_prompts", "2",
           "--output_dir", str(tmp_path / "c"), "--seed", "5"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    from ualm_tk.bin.dpo_sample import main as dpo_sample

    with pytest.raises(SystemExit, match="--job must be in 1..2, got 3"):
        dpo_sample(cmd[3:-4] + ["--nj", "2", "--job", "3", "--output_dir", str(tmp_path / "x")])
    import kaldiio

    mine = read_kaldi_file(tmp_path / "c" / "codes.scp")
    theirs = read_kaldi_file(candidates["dirs"][0] / "codes.scp")
    assert mine and set(mine) <= set(theirs)
    for k in mine:
        np.testing.assert_array_equal(kaldiio.load_mat(mine[k]), kaldiio.load_mat(theirs[k]))


@pytest.fixture(scope="module")
def pairs_dir(candidates, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rewards = {}
    for d in candidates["dirs"]:
        for c, p in read_kaldi_file(d / "wav.scp").items():
            info = sf.info(p)
            rewards[c] = f"{-abs(info.frames / info.samplerate - 0.4):.6g}"
    write_kaldi_file(root / "duration_reward", rewards)
    dpo_pairs(["--candidates_dir", *map(str, candidates["dirs"]), "--data_json", candidates["data_json"],
               "--rewards", str(root / "duration_reward"), "--output_dir", str(root / "train")])
    return root / "train"


def test_pairs_pick_the_best_and_worst_candidate(pairs_dir):
    doc = json.loads((pairs_dir / "pairs.json").read_text())
    stats = json.loads((pairs_dir / "stats.json").read_text())
    given = {k: float(v) for k, v in read_kaldi_file(pairs_dir / "rewards").items()}
    assert stats["counts"]["pairs"] == len(doc["pairs"]) > 0
    assert stats["counts"]["prompts"] == stats["counts"]["pairs"] + stats["counts"]["too_few"] + stats["counts"]["tie"]
    for p, rec in doc["pairs"].items():
        mine = {c: r for c, r in given.items() if c.startswith(p + "-cand")}
        assert rec["chosen"] == max(mine, key=mine.get) and rec["rejected"] == min(mine, key=mine.get)
    assert stats["mean_reward_chosen"] > stats["mean_reward_rejected"]


def margins(model, pairs_json, layout):
    ds = PairsDataset([str(pairs_json)], layout, build_pattern("delay"))
    _, b = collate_pairs([ds[(i, 0)] for i in range(len(ds))])
    B = len(ds)
    with torch.no_grad():
        lp = sequence_logprobs(model.eval(), b["tokens"], b["loss_mask"], b["lengths"]).logp
    return (lp[:B] - lp[B:]).numpy()  # chosen − rejected per pair


def test_dpo_training_raises_the_margin_and_saves_a_plain_model(pairs_dir, trained, repo_root, tmp_path):
    from ualm_tk.bin.generate import main as generate
    from ualm_tk.tasks.ualm_dpo import main as train_dpo

    out = tmp_path / "dpo"
    pj = str(pairs_dir / "pairs.json")
    train_dpo(["--config", str(repo_root / DPO_CONF), "--init_model_dir", str(trained["model_dir"]),
               "--output_dir", str(out), "--train_data_path_and_name_and_type", f"{pj},dpo,dpo_pairs",
               "--valid_data_path_and_name_and_type", f"{pj},dpo,dpo_pairs", "--max_epoch", "1",
               "--num_iters_per_epoch", "2", "--seed", "0"])
    # the saved weights are the policy's only, with a plain UALMModel's keys
    init_model, layout, _ = load_model_dir(trained["model_dir"])
    for name in ("1epoch.pth", "valid.loss.best.pth", "latest.pth"):
        state = torch.load(out / name, map_location="cpu", weights_only=True)
        assert set(state) == set(init_model.state_dict()), name
        assert not any("reference" in k or k.startswith("policy.") for k in state)
    ck = torch.load(out / "checkpoint.pth", weights_only=False)
    assert set(ck["model"]) == set(init_model.state_dict())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"] == "ualm" and cfg["init_model_dir"] == str(trained["model_dir"])
    # the directory reloads as a plain UALM model and generates
    tuned, _, _ = load_model_dir(out)
    assert type(tuned) is UALMModel
    before = margins(init_model, pj, layout)
    after = margins(tuned, pj, layout)
    assert after.mean() > before.mean(), (before, after)
    assert (after > before).mean() > 0.5, (before, after)  # most pairs, not one outlier
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), init_model.state_dict().values()))
    gen = tmp_path / "gen"
    generate(["--model_dir", str(out), "--text", "a dog sound", "--output_dir", str(gen), "--max_steps", "12",
              "--codec_dir", str(trained["codec_dir"])])
    assert np.load(gen / "codes.npy").shape[0] == 4
    # the DPO statistics were logged by the trainer
    from espnet2.train.reporter import Reporter

    r = Reporter()
    r.load_state_dict(ck["reporter"])
    for key in ("dpo_loss", "dpo_reward_margin", "dpo_reward_accuracy", "ce_chosen", "logp_margin"):
        assert np.isfinite(r.get_value("train", key, 1)), key
