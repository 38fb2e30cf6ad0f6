"""Stage-7 commands on a tiny model trained here: lm_decode (shards, resume), lm_decode_merge, lm_heldout_loss."""
import json
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from lm_corpus import K, N, build_corpus, save_tiny_codec, train_tiny_lm  # noqa: E402

from ualm_tk.bin.lm_decode import main as decode  # noqa: E402
from ualm_tk.bin.lm_decode_merge import main as merge  # noqa: E402
from ualm_tk.bin.lm_heldout_loss import main as heldout  # noqa: E402
from ualm_tk.data.kaldi_files import read_kaldi_file  # noqa: E402
from ualm_tk.data.task_data import TaskData, load_codes  # noqa: E402
from ualm_tk.inference.batch_decode import key_seed, shard_keys  # noqa: E402
from ualm_tk.models.generation import generate_from_segments, load_model_dir  # noqa: E402
from ualm_tk.vae import build_vae, save_vae  # noqa: E402

VAE_CONF = dict(latent_dim=4, encoder_channels=[4, 8, 8], encoder_strides=[2, 4, 5], decoder_dim=16, decoder_layers=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("lmdec")
    c = build_corpus(root)
    exp, codec = train_tiny_lm(c, root / "exp", repo_root), save_tiny_codec(root / "codec")
    save_vae(build_vae("residual_vae", VAE_CONF).eval(), root / "vae", "residual_vae", VAE_CONF)
    return dict(exp=exp, codec=codec, vae=root / "vae", corpus=c)


def _run(trained, task, out, nj, job, *extra):
    decode(["--model_dir", str(trained["exp"]), "--data_json", str(trained["corpus"]["data"][task]),
            "--output_dir", str(out / f"output.{job}"), "--nj", str(nj), "--job", str(job), *extra])


def test_shard_keys_cover_all_keys_once_in_byte_order():
    keys = [f"k{i}" for i in range(10)] + ["K", "a-b", "a_b"]
    shards = [shard_keys(keys, 4, j) for j in range(1, 5)]
    assert sum(shards, []) == sorted(keys, key=lambda k: k.encode())
    assert [len(s) for s in shards] == [3, 3, 3, 4]
    assert key_seed(0, "a") == key_seed(0, "a") != key_seed(1, "a") != key_seed(0, "b")
    with pytest.raises(ValueError, match="job must be in 1..4"):
        shard_keys(keys, 4, 5)


def test_text_task_two_shards_equal_one_and_match_generate(trained, tmp_path):
    one, two = tmp_path / "nj1", tmp_path / "nj2"
    _run(trained, "audio_qa", one, 1, 1, "--max_steps", "6")
    merge(["--output_dir", str(one), "--nj", "1"])
    for j in (1, 2):
        _run(trained, "audio_qa", two, 2, j, "--max_steps", "6")
    merge(["--output_dir", str(two), "--nj", "2"])
    t1 = read_kaldi_file(one / "text", allow_empty_value=True)
    t2 = read_kaldi_file(two / "text", allow_empty_value=True)
    data = TaskData.load(trained["corpus"]["data"]["audio_qa"])
    assert t1 == t2 and sorted(t1) == sorted(data.keys())
    shard1 = read_kaldi_file(two / "output.1" / "text", allow_empty_value=True)
    assert len(shard1) == len(data.keys()) // 2
    # the answer is exactly what generate_from_segments gives for the stored prompt
    model, _, tok = load_model_dir(trained["exp"])
    key = sorted(data.keys())[3]
    g = generate_from_segments(model, data.segments(key), max_steps=6)[0]
    assert t1[key] == " ".join(tok.decode(g.text_ids).split())


def test_model_dir_loads_the_averaged_checkpoint_before_the_best(trained, tmp_path):
    """ESPnet's average of the n best epochs (``valid.loss.ave.pth``) is what decoding uses when it is there."""
    import shutil

    d = tmp_path / "exp"
    shutil.copytree(trained["exp"], d)  # links copied as files
    state = torch.load(d / "valid.loss.best.pth", map_location="cpu", weights_only=True)
    ave = {k: v + 0.5 if k == "head.weight" else v for k, v in state.items()}
    torch.save(ave, d / "valid.loss.ave.pth")
    model, _, _ = load_model_dir(d)
    assert torch.equal(model.head.weight, ave["head.weight"])
    (d / "valid.loss.ave.pth").unlink()
    model, _, _ = load_model_dir(d)
    assert torch.equal(model.head.weight, state["head.weight"])


def test_audio_task_shards_codec_vae_and_max_examples(trained, tmp_path):
    extra = ["--max_steps", "12", "--max_examples", "5", "--seed", "7", "--codec_dir", str(trained["codec"])]
    one, two = tmp_path / "nj1", tmp_path / "nj2"
    _run(trained, "caption_to_audio", one, 1, 1, *extra, "--vae_dir", str(trained["vae"]))
    merge(["--output_dir", str(one), "--nj", "1"])
    for j in (1, 2):
        _run(trained, "caption_to_audio", two, 2, j, *extra)
    merge(["--output_dir", str(two), "--nj", "2"])
    scp1, scp2 = read_kaldi_file(one / "codes.scp"), read_kaldi_file(two / "codes.scp")
    keys = sorted(TaskData.load(trained["corpus"]["data"]["caption_to_audio"]).keys())[:5]
    assert sorted(scp1) == sorted(scp2) == keys
    for k in keys:
        a, b = kaldiio.load_mat(scp1[k]), kaldiio.load_mat(scp2[k])
        assert a.dtype == np.int16 and a.shape[1] == K and a.shape[0] <= 12 - (K - 1)
        np.testing.assert_array_equal(a, b)  # per-key seeds: independent of nj
        np.testing.assert_array_equal(load_codes(scp1[k], "TK").T, a)  # readable like dump/codes
    wavs, vae_wavs = read_kaldi_file(one / "wav.scp"), read_kaldi_file(one / "wav_vae.scp")
    assert sorted(wavs) == sorted(vae_wavs) == keys and not (two / "wav_vae.scp").exists()
    for k in keys:
        wav, sr = sf.read(wavs[k])
        T = kaldiio.load_mat(scp1[k]).shape[0]
        assert sr == 16000 and len(wav) == max(T, 1) * 640
        hi, sr_hi = sf.read(vae_wavs[k])
        assert sr_hi == 48000 and hi.shape[0] == len(wav) * 3


def test_resume_skips_finished_keys_and_refuses_other_settings(trained, tmp_path):
    out = tmp_path / "dec"
    _run(trained, "text_only", out, 1, 1, "--max_steps", "5", "--max_examples", "6")
    shard = out / "output.1"
    parts = sorted((shard / "partial").glob("*.txt"))
    assert len(parts) == 6
    before = {p.name: p.stat().st_mtime_ns for p in parts}
    text_before = (shard / "text").read_text()
    # simulate a job killed after 4 keys: two results and the shard outputs are gone
    for p in parts[-2:]:
        p.unlink()
    (shard / "info.json").unlink()
    (shard / "text").unlink()
    with pytest.raises(SystemExit, match=r"output\.1: incomplete, 2 of 6 keys not decoded.*rerun job 1"):
        merge(["--output_dir", str(out), "--nj", "1"])
    _run(trained, "text_only", out, 1, 1, "--max_steps", "5", "--max_examples", "6")
    after = {p.name: p.stat().st_mtime_ns for p in sorted((shard / "partial").glob("*.txt"))}
    assert set(after) == set(before)
    assert all(after[n] == before[n] for n in list(before)[:4])  # finished keys were not decoded again
    assert all(after[n] != before[n] for n in list(before)[4:])
    assert (shard / "text").read_text() == text_before
    info_mtime = (shard / "info.json").stat().st_mtime_ns
    _run(trained, "text_only", out, 1, 1, "--max_steps", "5", "--max_examples", "6")  # complete: a no-op
    assert (shard / "info.json").stat().st_mtime_ns == info_mtime
    with pytest.raises(SystemExit, match="other settings.*max_steps"):
        _run(trained, "text_only", out, 1, 1, "--max_steps", "7", "--max_examples", "6")
    with pytest.raises(SystemExit, match="other keys"):
        _run(trained, "text_only", out, 1, 1, "--max_steps", "5", "--max_examples", "4")


def test_merge_names_missing_shards_and_bad_arguments(trained, tmp_path):
    out = tmp_path / "dec"
    _run(trained, "text_only", out, 3, 2, "--max_steps", "4", "--max_examples", "6")
    with pytest.raises(SystemExit) as e:
        merge(["--output_dir", str(out), "--nj", "3"])
    msg = str(e.value)
    assert "output.1: missing (job 1 never started)" in msg and "output.3: missing" in msg and "output.2" not in msg
    with pytest.raises(SystemExit, match="names shard 2 but --job is 1"):
        _run_dir = out / "output.2"
        decode(["--model_dir", str(trained["exp"]), "--data_json", str(trained["corpus"]["data"]["text_only"]),
                "--output_dir", str(_run_dir), "--nj", "3", "--job", "1"])
    with pytest.raises(SystemExit, match="--job must be in 1..--nj"):
        _run(trained, "text_only", out, 3, 4)


def test_heldout_loss_model_and_unigram(trained, tmp_path, python_exe, subprocess_env):
    c = trained["corpus"]
    out = tmp_path / "hl"
    r = subprocess.run([python_exe, "-m", "ualm_tk.bin.lm_heldout_loss", "--model_dir", str(trained["exp"]),
                        "--data_json", str(c["data"]["caption_to_audio"]), "--train_codes",
                        str(c["root"] / "dump" / "codes" / "codes.scp"), "--output_dir", str(out), "--batch_size", "5"],
                       env={**subprocess_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "heldout_loss.json").read_text())
    assert "| model |" in (out / "heldout_loss.md").read_text()
    data = TaskData.load(c["data"]["caption_to_audio"])
    codes = [load_codes(read_kaldi_file(c["root"] / "dump" / "codes" / "codes.scp")[k], "TK") for k in sorted(data.keys())]
    assert res["num_frames"] == sum(x.shape[1] for x in codes)
    # unigram by hand: add-one counts over the same (train = held-out here) codes
    allc = np.concatenate(codes, axis=1)  # [K,T]
    for k in range(K):
        p = (np.bincount(allc[k], minlength=N) + 1) / (allc.shape[1] + N)
        assert res["unigram"]["per_stream"][k] == pytest.approx(-np.log(p[allc[k]]).mean(), rel=1e-9)
    assert len(res["model"]["per_stream"]) == K and all(0 < v < 20 for v in res["model"]["per_stream"])
    # restricting stream 0 to codebook 0 + <eos> (the decode vocabulary) can only lower its CE
    assert 0 < res["model"]["stream0_decode_vocab"] <= res["model"]["per_stream"][0]
    # the model's per-stream CE equals a direct teacher-forced computation (batching changes nothing)
    model, lay, _ = load_model_dir(trained["exp"])
    from ualm_tk.inference.teacher_forced import audio_token_nll

    one = audio_token_nll(model, data, sorted(data.keys()), batch_size=1)
    assert one["per_stream"] == pytest.approx(res["model"]["per_stream"], rel=1e-4)
    with pytest.raises(SystemExit, match="no assistant audio segment"):
        heldout(["--model_dir", str(trained["exp"]), "--data_json", str(c["data"]["audio_qa"]), "--train_codes",
                 str(c["root"] / "dump" / "codes" / "codes.scp"), "--output_dir", str(out)])


def _text_shard(root, job, nj, keys, results):
    """A finished text shard: ``results`` key -> (answer, thinking or None)."""
    from ualm_tk.inference.batch_decode import ShardState

    st = ShardState(root / f"output.{job}", keys, dict(task="text_only", nj=nj, job=job), "text")
    for k in keys:
        st.save_text(k, *results[k])
    return st.finalize(dict(task="text_only", nj=nj, job=job, modality="text"))


def test_shard_thinking_file_and_merge(tmp_path):
    from ualm_tk.inference.batch_decode import merge_shards

    res = {"a": ("42", "17 + 25 =  42 | check"), "b": ("7", None), "c": ("", "no answer\n"), "d": ("5", None)}
    assert _text_shard(tmp_path, 1, 2, ["a", "b"], res)["thinking"] == 1
    # the thinking is written before the answer, whitespace-collapsed like it
    assert (tmp_path / "output.1" / "partial_thinking" / "a.txt").read_text() == "17 + 25 = 42 | check"
    assert read_kaldi_file(tmp_path / "output.1" / "thinking", allow_empty_value=True) == {"a": "17 + 25 = 42 | check", "b": ""}
    _text_shard(tmp_path, 2, 2, ["c", "d"], res)
    modality, counts = merge_shards(tmp_path, 2)
    assert modality == "text" and counts == {"text": 4, "thinking": 4}
    assert read_kaldi_file(tmp_path / "thinking", allow_empty_value=True) == {
        "a": "17 + 25 = 42 | check", "b": "", "c": "no answer", "d": ""}
    assert read_kaldi_file(tmp_path / "text", allow_empty_value=True) == {"a": "42", "b": "7", "c": "", "d": "5"}


def test_shard_without_thinking_keys_merges_as_empty_and_none_means_no_file(tmp_path):
    from ualm_tk.inference.batch_decode import merge_shards

    res = {"a": ("42", "sum"), "b": ("7", None), "c": ("3", None)}
    _text_shard(tmp_path / "some", 1, 2, ["a"], res)
    _text_shard(tmp_path / "some", 2, 2, ["b", "c"], res)  # no key of this shard thought: no file
    assert not (tmp_path / "some" / "output.2" / "thinking").exists()
    merge_shards(tmp_path / "some", 2)
    assert read_kaldi_file(tmp_path / "some" / "thinking", allow_empty_value=True) == {"a": "sum", "b": "", "c": ""}
    # no thinking at all: outputs as before (no thinking file anywhere)
    plain = {k: (v[0], None) for k, v in res.items()}
    assert "thinking" not in _text_shard(tmp_path / "none", 1, 1, ["a", "b", "c"], plain)
    assert merge_shards(tmp_path / "none", 1) == ("text", {"text": 3})
    assert not (tmp_path / "none" / "thinking").exists() and not (tmp_path / "none" / "output.1" / "thinking").exists()
    assert not (tmp_path / "none" / "output.1" / "partial_thinking").exists()


def test_rerun_of_a_key_without_thinking_drops_a_stale_one(tmp_path):
    from ualm_tk.inference.batch_decode import ShardState

    st = ShardState(tmp_path / "output.1", ["a"], dict(task="text_only"), "text")
    st.save_text("a", "1", thinking="old")
    st.save_text("a", "1")
    assert "thinking" not in st.finalize(dict(task="text_only", modality="text"))
    assert not (tmp_path / "output.1" / "thinking").exists()


def test_lm_decode_writes_the_model_thinking(trained, tmp_path, monkeypatch):
    from ualm_tk.models import generation

    data = TaskData.load(trained["corpus"]["data"]["text_only"])
    keys = sorted(data.keys(), key=lambda k: k.encode())[:4]
    _, lay, tok = load_model_dir(trained["exp"])
    w = [i for i in range(lay.text_size) if tok.decode([i]).strip().isalnum()][:3]

    def fake(model, segs, **kw):  # the first two keys (shard 1) think in two segments, the others not
        key = next(k for k in keys if data.segments(k) == list(segs))  # lm_decode passes the stored segments
        thinking = [[w[0]], [w[1]]] if key in keys[:2] else []
        return [generation.Generation(None, [w[2]], True, thinking)]

    monkeypatch.setattr(generation, "generate_from_segments", fake)
    out = tmp_path / "dec"
    for j in (1, 2):
        _run(trained, "text_only", out, 2, j, "--max_examples", "4")
    merge(["--output_dir", str(out), "--nj", "2"])
    expect = " ".join(f"{tok.decode([w[0]])} | {tok.decode([w[1]])}".split())
    assert read_kaldi_file(out / "thinking", allow_empty_value=True) == {
        k: (expect if k in keys[:2] else "") for k in keys}
    assert set(read_kaldi_file(out / "text").values()) == {tok.decode([w[2]])}
