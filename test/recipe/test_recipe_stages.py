"""The mini recipe's stages on a tiny corpus, run as a user runs them: ./run.sh in a recipe dir."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from ualm_tk.data.kaldi_files import read_kaldi_file

pytestmark = pytest.mark.recipe

TINY = "--corpus_dir corpus --num_clips 40 --seed 3"


def make_recipe(repo_root: Path, where: Path, env) -> Path:
    """A fresh copy of egs2/mini_ualm/ualm1 (links to shared code, its own outputs)."""
    target = where / "egs2" / "mini_ualm" / "ualm1"
    subprocess.run(
        [str(repo_root / "egs2/TEMPLATE/ualm1/setup.sh"), str(target)],
        check=True, capture_output=True, env=env,
    )
    src = repo_root / "egs2" / "mini_ualm" / "ualm1"
    shutil.rmtree(target / "local")
    os.symlink(src / "local", target / "local")
    shutil.copy(src / "run.sh", target / "run.sh")
    return target


def run(recipe: Path, env, *args, check=True):
    r = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


@pytest.fixture(scope="module")
def recipe(repo_root, tmp_path_factory):
    env = dict(os.environ)
    env["UALM_CMD_BACKEND"] = "local"
    where = tmp_path_factory.mktemp("recipe")
    rec = make_recipe(repo_root, where, env)
    first = run(rec, env, "--stop_stage", "2", "--local_data_opts", TINY)
    return rec, env, first


def test_stages_1_and_2_build_data_and_dump(recipe):
    rec, env, first = recipe
    out = first.stdout
    assert "Stage 1: data preparation: local/data.sh -> data/{train,valid,test}" in out
    for s in ("train", "valid", "test"):
        assert f"Stage 2: audio formatting and validation: data/{s} -> dump/audio/{s}" in out
        dump = rec / "dump" / "audio" / s
        wavs = read_kaldi_file(dump / "wav.scp")
        masters = read_kaldi_file(dump / "master.scp")
        nsamp = read_kaldi_file(dump / "utt2num_samples")
        data_keys = set(read_kaldi_file(rec / "data" / s / "wav.scp"))
        rejected = set(read_kaldi_file(dump / "rejected", allow_empty_value=True)) if (dump / "rejected").stat().st_size else set()
        # every clip is either kept or rejected with a reason: nothing lost
        assert set(wavs) | rejected == data_keys and not (set(wavs) & rejected)
        assert set(wavs) == set(masters) == set(nsamp)
        assert set(read_kaldi_file(dump / "text")) == set(wavs)
        for key, path in list(wavs.items())[:5]:
            info = sf.info(str(rec / path))  # paths are relative to the recipe dir
            assert info.samplerate == 16000 and info.channels == 1, (key, info)
            assert info.frames == int(nsamp[key])
            assert sf.info(masters[key]).samplerate == 48000


def test_rerun_is_a_no_op(recipe):
    rec, env, _ = recipe
    stamp = (rec / "dump" / "audio" / "train" / "wav.scp").stat().st_mtime_ns
    r = run(rec, env, "--stop_stage", "2", "--local_data_opts", TINY)
    assert "Stage 1: data preparation: already done" in r.stdout
    assert "dump/audio/train already done" in r.stdout
    assert (rec / "dump" / "audio" / "train" / "wav.scp").stat().st_mtime_ns == stamp


def test_changed_options_need_force(recipe):
    rec, env, _ = recipe
    r = run(rec, env, "--stage", "2", "--stop_stage", "2", "--fs", "8000", check=False)
    assert r.returncode != 0
    assert "was made with other options" in r.stderr and "--force true" in r.stderr


def test_corrupt_master_is_rejected_with_reason_and_stage_goes_on(recipe):
    rec, env, _ = recipe
    wav_scp = read_kaldi_file(rec / "data" / "train" / "wav.scp")
    victim, path = sorted(wav_scp.items())[0]
    (rec / path).write_bytes(b"RIFF\x00\x00garbage" * 10)
    r = run(rec, env, "--stage", "2", "--stop_stage", "2", "--force", "true")
    rejected = read_kaldi_file(rec / "dump" / "audio" / "train" / "rejected")
    assert victim in rejected and "unreadable" in rejected[victim]
    assert victim not in read_kaldi_file(rec / "dump" / "audio" / "train" / "wav.scp")
    assert victim in (rec / "dump" / "audio" / "train" / "rejected_report.md").read_text()
    assert "1 of" in r.stdout and "rejected" in r.stdout


@pytest.mark.slurm
def test_stage_2_as_slurm_array_jobs(recipe, slurm_cluster):
    """The same stage through the slurm backend: one sbatch array per call, same outputs."""
    rec, env, _ = recipe
    env = dict(env, UALM_CMD_BACKEND="slurm", SLURM_CONF=slurm_cluster)
    dump = rec / "dump" / "audio" / "valid"
    before = read_kaldi_file(dump / "wav.scp")
    r = run(rec, env, "--stage", "2", "--stop_stage", "2", "--force", "true", "--test_sets", "test")
    assert "backend slurm" in r.stdout
    logs = sorted((dump / "log").glob("format.*.log"))
    assert logs, "no task logs"
    for log in logs:
        text = log.read_text()
        assert "# Slurm job" in text and "# Ended (code 0)" in text, text[-2000:]
    assert list((dump / "log" / "q").glob("*.sh")), "no sbatch script kept under log/q"
    assert read_kaldi_file(dump / "wav.scp") == before


TINY_CODEC = "--max_epoch 1 --num_iters_per_epoch 4 --batch_size 4 --valid_batch_size 4"
STAGE34 = ("--stage", "3", "--stop_stage", "4", "--codec_train_opts", TINY_CODEC,
           "--vae_config", "conf/vae/tiny.yaml", "--bpe_vocab_size", "500")


@pytest.fixture(scope="module")
def recipe_stage4(recipe):
    """Stages 3-4 on the tiny corpus: a codec trained for a few steps, codes, token list, data.json."""
    rec, env, _ = recipe
    r = run(rec, env, *STAGE34)
    return rec, env, r


def test_stage_3_trains_and_exports_a_codec(recipe_stage4):
    rec, env, r = recipe_stage4
    exp = rec / "exp" / "codec_mini_rvq"
    assert "Stage 3: codec and enhancement-VAE training: dump/audio/train -> exp/codec_mini_rvq" in r.stdout
    assert (exp / "codec" / "component.yaml").is_file() and (exp / "codec" / "model.pth").is_file()
    assert list((exp / "images").glob("*.png")), "no loss curves / spectrograms written"
    assert (exp / "log" / "train.log").read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    assert (exp / "eval_test" / "RESULTS.md").is_file()


def test_stage_3_trains_the_vae_on_codec_resynthesis_pairs(recipe_stage4):
    rec, env, r = recipe_stage4
    exp = rec / "exp" / "vae_tiny"
    assert "Stage 3: VAE pairs: dump/audio/train/master.scp -> dump/vae/train" in r.stdout
    pairs = read_kaldi_file(rec / "dump" / "vae" / "train" / "wav.scp")
    assert set(pairs) == set(read_kaldi_file(rec / "dump" / "audio" / "train" / "master.scp"))
    key = sorted(pairs)[0]
    assert sf.info(str(rec / pairs[key]) if not pairs[key].startswith("/") else pairs[key]).samplerate == 16000
    assert (exp / "vae" / "component.yaml").is_file()
    assert (exp / "eval_test" / "RESULTS.md").is_file()
    assert list((exp / "eval_test").rglob("*.png")), "no spectrograms of the VAE evaluation"


def test_stage_4_codes_token_list_and_task_data(recipe_stage4):
    import json

    import kaldiio

    rec, env, r = recipe_stage4
    info = json.loads((rec / "dump" / "codes" / "train" / "codes_info.json").read_text())
    K = info["num_codebooks"]
    for s in ("train", "valid", "test"):
        kept = read_kaldi_file(rec / "dump" / "audio" / s / "wav.scp")
        codes = read_kaldi_file(rec / "dump" / "codes" / s / "codes.scp")
        frames = read_kaldi_file(rec / "dump" / "codes" / s / "utt2num_frames")
        nsamp = read_kaldi_file(rec / "dump" / "audio" / s / "utt2num_samples")
        assert set(codes) == set(kept) == set(frames)
        key = sorted(codes)[0]
        arr = kaldiio.load_mat(str(rec / codes[key]) if not codes[key].startswith("/") else codes[key])
        assert arr.shape == (int(frames[key]), K)
        assert abs(arr.shape[0] - int(nsamp[key]) / info["hop_length"]) <= 1
        assert arr.min() >= 0 and arr.max() < info["codebook_size"]
        for task in ("caption_to_audio", "audio_to_caption", "audio_qa", "text_only"):
            doc = json.loads((rec / "dump" / task / s / "data.json").read_text())
            assert doc["task"] == task and doc["num_examples"] > 0
    bias = json.loads((rec / "data" / "token_list" / "token_bias.json").read_text())
    assert bias["special"] == 0 and bias["text"] == 256 and f"audio_{K - 1}" in bias
    # a re-run is a no-op
    r2 = run(rec, env, *STAGE34)
    assert "codec: exp/codec_mini_rvq already done" in r2.stdout
    assert "VAE: exp/vae_tiny already done" in r2.stdout
    assert "codes: dump/codes/train already done" in r2.stdout
    assert "Stage 4: token list: data/token_list already done" in r2.stdout
