"""The mini recipe's stages on a tiny corpus, run as a user runs them: ./run.sh in a recipe dir."""
import json
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


def test_changed_corpus_code_or_data_files_need_force(recipe):
    """A stage's signature covers what it reads: stage 1 the corpus code in local/, stage 2 every file of
    the data dir (not only wav.scp), so new text problems are never skipped as "already done"."""
    rec, env, _ = recipe
    link = rec / "local"
    src = link.resolve()
    link.unlink()
    shutil.copytree(src, link)  # a copy of the generator this recipe may change
    try:
        with open(link / "data.sh", "a", encoding="utf-8") as f:
            f.write("\n# a changed generator\n")
        r = run(rec, env, "--stop_stage", "1", "--local_data_opts", TINY, check=False)
        assert r.returncode != 0, r.stdout[-2000:]
        assert "data/.done.stage1 was made with other options" in r.stderr and "local=" in r.stderr, r.stderr[-2000:]
    finally:
        shutil.rmtree(link)
        os.symlink(src, link)
    question = rec / "data" / "train" / "text_only" / "question"
    original = question.read_bytes()
    try:
        first, rest = original.split(b"\n", 1)
        question.write_bytes(first + b" Count again.\n" + rest)
        r = run(rec, env, "--stage", "2", "--stop_stage", "2", check=False)
        assert r.returncode != 0 and "dump/audio/train/.done was made with other options" in r.stderr, r.stderr[-2000:]
    finally:
        question.write_bytes(original)
    r = run(rec, env, "--stop_stage", "2", "--local_data_opts", TINY)  # both restored: nothing to redo
    assert "Stage 1: data preparation: already done" in r.stdout and "dump/audio/train already done" in r.stdout


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
        set_info = json.loads((rec / "dump" / "codes" / s / "codes_info.json").read_text())
        assert set_info["num_utterances"] == len(kept)  # the merged set, not one shard
        assert set(codes) == set(kept) == set(frames)
        key = sorted(codes)[0]
        arr = kaldiio.load_mat(str(rec / codes[key]) if not codes[key].startswith("/") else codes[key])
        assert arr.shape == (int(frames[key]), K)
        assert abs(arr.shape[0] - int(nsamp[key]) / info["hop_length"]) <= 1
        assert arr.min() >= 0 and arr.max() < info["codebook_size"]
        for task in ("caption_to_audio", "audio_to_caption", "audio_qa", "text_only"):
            doc = json.loads((rec / "dump" / task / s / "data.json").read_text())
            assert doc["task"] == task and doc["num_examples"] > 0
        # text problems come with worked solutions: the assistant thinks (<eot>) before it answers
        ex = next(iter(json.loads((rec / "dump" / "text_only" / s / "data.json").read_text())["examples"].values()))
        turn = [(g["role"], g.get("end", "<eos>")) for g in ex["segments"]]
        assert turn[-2:] == [("assistant", "<eot>"), ("assistant", "<eos>")], turn
    bias = json.loads((rec / "data" / "token_list" / "token_bias.json").read_text())
    assert bias["special"] == 0 and bias["text"] == 256 and f"audio_{K - 1}" in bias
    # a re-run is a no-op
    r2 = run(rec, env, *STAGE34)
    assert "codec: exp/codec_mini_rvq already done" in r2.stdout
    assert "VAE: exp/vae_tiny already done" in r2.stdout
    assert "codes: dump/codes/train already done" in r2.stdout
    assert "Stage 4: token list: data/token_list already done" in r2.stdout


# ---- stages 5-7: LM training, inference ----
TINY_LM = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"
LM_EXP = "exp/ualm_train_ualm_tiny"


TINY_ENC_PRETRAIN = "egs2/TEMPLATE/ualm1/conf/audio_encoder_pretrain_tiny.yaml"


def _lm_opts(repo_root):
    return ("--lm_config", str(repo_root / TINY_LM), "--lm_train_opts", "--max_epoch 3",
            "--lm_encoder_pretrain_config", str(repo_root / TINY_ENC_PRETRAIN), "--lm_text_pretrain_epochs", "1",
            "--vae_config", "conf/vae/tiny.yaml")


def _kill_training(rec: Path, proc: subprocess.Popen):
    """SIGKILL run.sh's process group and the training's own (the job backend gives each task a session)."""
    import signal

    pgids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if b"ualm_tk.tasks.ualm" in cmd and cwd == str(rec.resolve()):
            pgids.add(os.getpgid(int(d.name)))
    assert pgids, "no training process found to kill"
    for pg in pgids | {proc.pid}:
        try:
            os.killpg(pg, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def recipe_stage5(recipe_stage4, repo_root):
    """Stage 5 killed (SIGKILL) in its 2nd epoch of 3, then rerun: it must resume and finish."""
    import time

    rec, env, _ = recipe_stage4
    args = ["./run.sh", "--stage", "5", "--stop_stage", "5", *_lm_opts(repo_root)]
    log = rec / LM_EXP / "train.log"
    proc = subprocess.Popen(args, cwd=rec, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 600  # stage 5a (encoder pre-training) runs first
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "2/3epoch started" in log.read_text(errors="replace"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"stage 5 ended before it could be killed:\n{proc.stdout.read().decode()[-3000:]}"
    _kill_training(rec, proc)
    killed_log = log.read_text(errors="replace")
    done_after_kill = (rec / LM_EXP / ".done").exists()
    # decoding the partly trained model is refused (its config.yaml and checkpoint exist already)
    early = run(rec, env, "--stage", "7", "--stop_stage", "7", *_lm_opts(repo_root), check=False)
    r = run(rec, env, "--stage", "5", "--stop_stage", "5", *_lm_opts(repo_root))
    return rec, env, killed_log, done_after_kill, r, early


def test_stage_5_killed_training_resumes_from_its_checkpoint(recipe_stage5):
    rec, env, killed_log, done_after_kill, r, early = recipe_stage5
    exp = rec / LM_EXP
    assert "The training was finished" not in killed_log and not done_after_kill
    assert early.returncode != 0 and "has not finished (no .done from stage 5)" in early.stderr, early.stderr
    assert f"Stage 5: resuming the interrupted training from {LM_EXP}/checkpoint.pth" in r.stdout
    # a stage that dies leaves no wall-time row: neither the killed stage 5 nor the refused stage 7, only the rerun
    stages = [ln.split("\t")[1] for ln in (rec / "exp" / "stage_times.tsv").read_text().splitlines()[1:]]
    assert stages[-1] == "5" and stages.count("5") == 1 and "7" not in stages, stages
    log = (exp / "train.log").read_text()
    assert "The training was resumed using" in log
    assert "1/3epoch started" not in log and "2/3epoch started" in log and "3/3epoch started" in log
    assert "The training was finished at 3 epochs" in log
    # progress of the job is echoed while it runs
    assert "train.log: " in r.stdout and "3epoch results" in r.stdout
    # the killed run's log is kept
    old = list((exp / "log").glob("train.*.log"))
    assert len(old) == 1 and "1/3epoch started" in old[0].read_text()
    import torch
    from espnet2.train.reporter import Reporter

    rep = Reporter()
    rep.load_state_dict(torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"])
    assert rep.get_epoch() == 3
    assert all(rep.get_value("train", "loss", e) > 0 for e in (1, 2, 3))


def test_stage_5_leaves_a_model_dir_and_rerun_is_a_no_op(recipe_stage5, repo_root):
    rec, env, *_ = recipe_stage5
    exp = rec / LM_EXP
    assert (exp / ".done").is_file() and (exp / "config.yaml").is_file()
    assert (exp / "token_list" / "token_list").is_file() and (exp / "valid.loss.best.pth").exists()
    import yaml

    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    tasks = sorted(t for _, t, _ in cfg["train_data_path_and_name_and_type"])
    assert tasks == sorted(["caption_to_audio", "audio_to_caption", "audio_qa_dialog", "text_only"])
    assert cfg["max_epoch"] == 3 and cfg["resume"] is True
    # 5a: the audio encoder was pre-trained on the question labels and the LM started from it
    enc = rec / "exp" / "audio_encoder_train_ualm_tiny"
    assert (enc / "encoder" / "model.pth").is_file() and "| is_there_speech |" in (enc / "RESULTS.md").read_text()
    assert "Frame event F1 (frame head" in (enc / "RESULTS.md").read_text()  # the corpus's timed events were read
    # 5b: the decoder pre-trained on text_only alone (the LM config, one epoch), scored on the valid problems;
    # the LM started from its weights except the audio encoder and adapter (those come from 5a)
    txt = rec / "exp" / "text_pretrain_train_ualm_tiny"
    tcfg = yaml.safe_load((txt / "config.yaml").read_text())
    assert [t for _, t, _ in tcfg["train_data_path_and_name_and_type"]] == ["text_only"]
    assert tcfg["task_factors"] == {"text_only": 1.0} and tcfg["max_epoch"] == 1
    assert tcfg["decoder_conf"] == cfg["decoder_conf"] and (txt / ".done").is_file()
    assert "The training was finished at 1 epochs" in (txt / "train.log").read_text()
    scores = (txt / "decode_valid" / "scores_understanding.md").read_text()
    assert "exact" in scores.lower() and (txt / "decode_valid" / "text").is_file()
    assert cfg["init_param"] == ["exp/audio_encoder_train_ualm_tiny/encoder/model.pth::audio_encoder",
                                 "exp/text_pretrain_train_ualm_tiny/valid.loss.best.pth:::audio_encoder,adapter"]
    train_log = (exp / "train.log").read_text()
    assert "Loading pretrained params from exp/audio_encoder_train_ualm_tiny" in train_log
    assert "Loading pretrained params from exp/text_pretrain_train_ualm_tiny/valid.loss.best.pth" in train_log
    stamp = (exp / "checkpoint.pth").stat().st_mtime_ns
    r = run(rec, env, "--stage", "5", "--stop_stage", "5", *_lm_opts(repo_root))
    assert "Stage 5a: audio encoder pre-training: exp/audio_encoder_train_ualm_tiny already done" in r.stdout
    assert "Stage 5b: decoder text pre-training: exp/text_pretrain_train_ualm_tiny already done" in r.stdout
    assert f"Stage 5: LM training: {LM_EXP} already done" in r.stdout
    assert (exp / "checkpoint.pth").stat().st_mtime_ns == stamp


def test_stage_5_trains_a_finished_model_longer_once_its_done_file_is_removed(recipe_stage5, repo_root):
    """A larger max_epoch on a finished model: refused with the way out in the message; after removing
    .done the training resumes from its checkpoint at the next epoch (no epoch is trained twice)."""
    rec, env, *_ = recipe_stage5
    tag = "longer"
    exp, enc = rec / "exp" / f"ualm_{tag}", rec / "exp" / f"audio_encoder_{tag}"
    shutil.copytree(rec / LM_EXP, exp, symlinks=True)  # a copy: the later stages use the original
    shutil.copytree(rec / "exp" / "audio_encoder_train_ualm_tiny", enc, symlinks=True)
    txt = rec / "exp" / f"text_pretrain_{tag}"
    shutil.copytree(rec / "exp" / "text_pretrain_train_ualm_tiny", txt, symlinks=True)
    opts = [("--max_epoch 4" if o == "--max_epoch 3" else o) for o in _lm_opts(repo_root)]
    try:
        r = run(rec, env, "--stage", "5", "--stop_stage", "5", *opts, "--lm_tag", tag, check=False)
        assert r.returncode != 0 and "was made with other options" in r.stderr, r.stderr[-2000:]
        assert f"remove exp/ualm_{tag}/.done: the training resumes from its checkpoint.pth" in r.stderr
        (exp / ".done").unlink()
        r = run(rec, env, "--stage", "5", "--stop_stage", "5", *opts, "--lm_tag", tag)
        assert f"Stage 5: resuming the interrupted training from exp/ualm_{tag}/checkpoint.pth" in r.stdout
        log = (exp / "train.log").read_text()
        assert "The training was resumed using" in log and "4/4epoch started" in log
        assert "3/4epoch started" not in log and "The training was finished at 4 epochs" in log
        import torch
        from espnet2.train.reporter import Reporter

        rep = Reporter()
        rep.load_state_dict(torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"])
        assert rep.get_epoch() == 4
        # epochs 1-3 are the original run's record, unchanged
        orig = Reporter()
        orig.load_state_dict(torch.load(rec / LM_EXP / "checkpoint.pth", weights_only=False)["reporter"])
        assert [rep.get_value("train", "loss", e) for e in (1, 2, 3)] == \
            [orig.get_value("train", "loss", e) for e in (1, 2, 3)]
    finally:
        shutil.rmtree(exp, ignore_errors=True)
        shutil.rmtree(enc, ignore_errors=True)
        shutil.rmtree(txt, ignore_errors=True)


def test_stage_5_with_a_qa_readout_encoder_pretrains_its_heads_and_keeps_the_text_pretraining(recipe_stage5,
                                                                                               repo_root, tmp_path):
    """An LM config whose encoder is ``mel_transformer_qa``: 5a trains the encoder with its own heads (sized from the
    corpus's qtypes.json), 5b stays done (text-only training never reaches the encoder), and the LM trains with
    the heads' answers on every frame: its frozen encoder, heads included, is 5a's."""
    import torch
    import yaml

    from ualm_tk.audio_encoder.qa_pretrain import QALabelSpace

    rec, env, *_ = recipe_stage5
    tag = "qa_readout"
    space = QALabelSpace.from_qtypes_json(rec / "data" / "qtypes.json")
    events = json.loads((rec / "exp" / "audio_encoder_train_ualm_tiny" / "label_space.json").read_text())["event_classes"]
    conf = yaml.safe_load((repo_root / TINY_LM).read_text())
    conf["audio_encoder"] = "mel_transformer_qa"
    conf["audio_encoder_conf"] = dict(size="tiny", num_answers=[len(space.answers[q]) for q in space.qtypes],
                                      num_event_classes=len(events), freeze=True)
    lm_config = tmp_path / "train_ualm_qa.yaml"
    lm_config.write_text(yaml.safe_dump(conf))
    txt = rec / "exp" / f"text_pretrain_{tag}"
    shutil.copytree(rec / "exp" / "text_pretrain_train_ualm_tiny", txt, symlinks=True)
    exp, enc = rec / "exp" / f"ualm_{tag}", rec / "exp" / f"audio_encoder_{tag}"
    opts = [str(lm_config) if o == str(repo_root / TINY_LM) else ("--max_epoch 1" if o == "--max_epoch 3" else o)
            for o in _lm_opts(repo_root)]
    try:
        r = run(rec, env, "--stage", "5", "--stop_stage", "5", *opts, "--lm_tag", tag)
        assert f"Stage 5b: decoder text pre-training: exp/text_pretrain_{tag} already done" in r.stdout
        assert "Stage 5a: done" in r.stdout and "The training was finished at 1 epochs" in (exp / "train.log").read_text()
        saved = torch.load(enc / "encoder" / "model.pth")
        lm = torch.load(exp / "valid.loss.best.pth")
        heads = [k for k in saved if k.startswith(("heads.", "frame_head."))]
        assert heads and all(torch.equal(lm[f"audio_encoder.{k}"], saved[k]) for k in saved)
        assert lm["adapter.net.weight"].shape[1] == 64 + len(events) + sum(conf["audio_encoder_conf"]["num_answers"])
    finally:
        for d in (exp, enc, txt):
            shutil.rmtree(d, ignore_errors=True)


def test_stage_5_multi_gpu_and_multi_node_commands(recipe_stage5, repo_root):
    rec, env, *_ = recipe_stage5
    base = ("--stage", "5", "--stop_stage", "5", "--lm_config", str(repo_root / TINY_LM), "--lm_dry_run", "true")
    r = run(rec, env, *base, "--ngpu", "2", "--lm_tag", "ddp")
    cmd = next(ln for ln in r.stdout.splitlines() if "python -m ualm_tk.tasks.ualm" in ln)
    assert cmd.startswith("utils/run_local.py --gpu 2 --num_threads 2 exp/ualm_ddp/train.log python -m ualm_tk.tasks.ualm")
    assert "--ngpu 2 --multiprocessing_distributed true --dist_backend nccl" in cmd and "--resume true" in cmd
    assert "srun" not in cmd and not (rec / "exp" / "ualm_ddp" / "train.log").exists()
    assert "wall time per stage" not in r.stdout  # a dry run times nothing
    # several nodes need Slurm
    r = run(rec, env, *base, "--num_nodes", "2", check=False)
    assert r.returncode != 0 and "--num_nodes 2 needs the slurm backend" in r.stderr
    r = run(rec, dict(env, UALM_CMD_BACKEND="slurm"), *base, "--num_nodes", "2", "--ngpu", "4")
    cmd = next(ln for ln in r.stdout.splitlines() if "python -m ualm_tk.tasks.ualm" in ln)
    assert cmd.startswith("utils/run_slurm.py --config conf/slurm.conf --gpu 4 --num_threads 4 --num_nodes 2 "
                          "exp/ualm_train_ualm_tiny/train.log srun --export=ALL --nodes 2 --ntasks-per-node 1 --cpus-per-task 4 python")
    assert "--ngpu 4 --multiprocessing_distributed true --dist_launcher slurm --dist_init_method file:///" in cmd
    assert "--dist_backend" not in cmd  # nccl, ESPnet's default
    r = run(rec, dict(env, UALM_CMD_BACKEND="slurm"), *base, "--num_nodes", "2", "--ngpu", "0")
    cmd = next(ln for ln in r.stdout.splitlines() if "python -m ualm_tk.tasks.ualm" in ln)
    assert "--ngpu 0 --multiprocessing_distributed true --dist_launcher slurm" in cmd and cmd.endswith("--dist_backend gloo")


# ---- stages 6-7: DPO, inference ----
# The evaluators (stage 6's reward, stage 8's metrics) train on train + valid + test here: on a 40-clip
# corpus the 4 valid and 4 test clips hold event classes that the 32 training clips lack, and a tagger
# cannot score a class it never saw (stage 6 scores valid prompts, stage 8 test clips). The default
# recipe trains them on the train set only. Stage 6 and stage 8 get the same options: stage 8 must find
# the evaluators of stage 6 done.
SCORERS = ("--scorer_train_opts", "--max_epochs 1", "--scorer_train_sets", "train valid test")
DPO_EXP = "exp/ualm_dpo_train_ualm_tiny"
# a tiny DPO: 8 train + 4 valid prompts x 4 candidates of <= 20 steps, 2 CE updates, 3 DPO updates (the
# tiny LM ends some candidates before their first frame: 4 draws leave most prompts a pair). The template's
# order (CE fine-tune on the winners, then DPO) is asked for explicitly: the mini run.sh skips the CE step
TINY_DPO = ("--dpo_num_prompts", "8", "--dpo_valid_prompts", "4", "--dpo_num_samples", "4",
            "--dpo_sample_opts", "--max_steps 20", "--dpo_ce_opts", "--max_epoch 1 --num_iters_per_epoch 2",
            "--dpo_train_opts", "--max_epoch 1 --num_iters_per_epoch 3", "--dpo_ce_finetune", "true")
STAGE67 = ("--stage", "6", "--stop_stage", "7", "--decode_tasks", "audio_qa text_only caption_to_audio",
           "--inference_nj", "2", "--inference_opts", "--max_steps 40", *SCORERS, *TINY_DPO)
DECODE_TAG = "decode_cfg3.0_topk20_temp0.8_max_steps40"


def _dpo_opts(repo_root):
    return ("--dpo_config", str(repo_root / "egs2/TEMPLATE/ualm1/conf/train_ualm_dpo_tiny.yaml"))


@pytest.fixture(scope="module")
def recipe_stage7(recipe_stage5, repo_root):
    rec, env, *_ = recipe_stage5
    r = run(rec, env, *STAGE67, *_lm_opts(repo_root), *_dpo_opts(repo_root))
    return rec, env, r


def test_stage_6_refuses_an_unfinished_stage_5_model(recipe_stage7, repo_root):
    rec, env, _ = recipe_stage7
    done = rec / LM_EXP / ".done"
    done.rename(done.with_name(".done.away"))
    try:
        r = run(rec, env, *STAGE67, *_lm_opts(repo_root), *_dpo_opts(repo_root), check=False)
    finally:
        done.with_name(".done.away").rename(done)
    assert r.returncode != 0 and f"Stage 6: the training in {LM_EXP} has not finished" in r.stderr, r.stderr


def test_stage_6_samples_scores_and_pairs_candidates(recipe_stage7):
    import json

    rec, env, r = recipe_stage7
    out = r.stdout
    # the reward's evaluators are trained here, by stage 6, in the dirs stage 8 uses
    assert "Stage 6: DPO: evaluator dump/audio/{train,valid,test} -> exp/scorer_tagger" in out
    for name in ("tagger", "clap_mini"):
        assert (rec / "exp" / f"scorer_{name}" / ".done").is_file()
    for part, n_prompts in (("train", 8), ("valid", 4)):
        cands = rec / DPO_EXP / "cands" / part
        prompts = sorted(json.loads((rec / "dump" / "caption_to_audio" / part / "data.json").read_text())["examples"])
        info = [json.loads(p.read_text()) for p in sorted(cands.glob("cands.*/sample_info.json"))]
        assert len(info) == 2 and len(list((cands / "log").glob("sample.*.log"))) == 2  # a JOB=1:2 array
        assert sum(i["prompts"] for i in info) == n_prompts
        assert sum(i["candidates"] + i["empty"] for i in info) == 4 * n_prompts
        c2p = {}
        for d in sorted(cands.glob("cands.*")):
            c2p.update(read_kaldi_file(d / "cand2prompt"))
            for c, wav in read_kaldi_file(d / "wav.scp").items():  # decoded for the reward
                assert sf.info(wav).samplerate == 16000, c
        assert set(c2p.values()) <= set(prompts[:n_prompts])  # the first N prompts, no other
        pdir = rec / DPO_EXP / "pairs" / part
        rewards = {c: float(v) for c, v in read_kaldi_file(pdir / "rewards").items()}
        assert set(rewards) == set(c2p) and all(-1.0 <= v <= 1.0 for v in rewards.values())
        comps = json.loads((pdir / "reward_components.json").read_text())
        assert all({"similarity", "event"} <= set(comps[c]) for c in c2p)  # CLAP-style + tagger rewards
        stats = json.loads((pdir / "stats.json").read_text())
        counts = stats["counts"]
        pairs = json.loads((pdir / "pairs.json").read_text())["pairs"]
        assert 1 <= counts["pairs"] == len(pairs) <= n_prompts
        assert counts["prompts"] == counts["pairs"] + counts["too_few"] + counts["tie"] + counts["small_gap"]
        assert counts["prompts"] == len(set(c2p.values()))
        for p, rec_ in pairs.items():
            mine = {c: v for c, v in rewards.items() if c2p[c] == p}
            assert rewards[rec_["chosen"]] == max(mine.values()) > rewards[rec_["rejected"]] == min(mine.values())
        assert stats["mean_reward_chosen"] > stats["mean_reward_rejected"]
        assert abs(stats["mean_reward"] - sum(rewards.values()) / len(rewards)) < 1e-4
        assert f"Stage 6: {DPO_EXP}/pairs/{part}/stats.json: {counts['pairs']} pairs of {counts['prompts']} prompts" in out


def test_stage_6_trains_a_plain_model_dir_after_a_ce_fine_tune(recipe_stage7):
    import json

    import yaml

    from ualm_tk.models.generation import load_model_dir
    from ualm_tk.models.ualm import UALMModel

    rec, env, r = recipe_stage7
    ce, dpo = rec / DPO_EXP / "ce_winners", rec / DPO_EXP
    for d, init, dpo_weight in ((ce, LM_EXP, 0.0), (dpo, f"{DPO_EXP}/ce_winners", 1.0)):
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert cfg["model"] == "ualm" and cfg["init_model_dir"] == init
        assert cfg["dpo_conf"].get("dpo_weight", 1.0) == dpo_weight and cfg["dpo_conf"]["beta"] == 0.1
        assert (d / ".done").is_file() and "The training was finished" in (d / "train.log").read_text()
    assert yaml.safe_load((ce / "config.yaml").read_text())["num_iters_per_epoch"] == 2
    assert yaml.safe_load((dpo / "config.yaml").read_text())["num_iters_per_epoch"] == 3
    # a plain UALM model dir whose weights moved away from the stage-5 model's
    tuned, _, _ = load_model_dir(dpo)
    base, _, _ = load_model_dir(rec / LM_EXP)
    assert type(tuned) is UALMModel
    assert any(not (a == b).all() for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))
    # the DPO model's reward on the same valid prompts, compared with the stage-5 model's
    stats = json.loads((dpo / "reward_valid" / "stats.json").read_text())
    assert 0.0 <= stats["compare"]["win_rate"] <= 1.0 and 1 <= stats["compare"]["num_prompts"] <= 4
    assert "Stage 6: reward on the valid prompts: mean reward per prompt" in r.stdout and "win rate of the DPO model" in r.stdout
    assert f"Stage 6: done; DPO model dir {DPO_EXP}" in r.stdout


def test_stage_6_without_the_ce_fine_tune_starts_dpo_from_the_stage_5_model(recipe_stage7, repo_root):
    import yaml

    rec, env, _ = recipe_stage7
    noce = "exp/ualm_dpo_tiny_noce"
    # STAGE67 without its last two words ("--dpo_ce_finetune true"): the mini run.sh's own default
    assert STAGE67[-2:] == ("--dpo_ce_finetune", "true")
    args = (*STAGE67[:2], "--stop_stage", "6", *STAGE67[4:-2], *_lm_opts(repo_root), *_dpo_opts(repo_root),
            "--dpo_tag", "tiny_noce")
    bad = run(rec, env, *args, "--dpo_ce_finetune", "yes", check=False)
    assert bad.returncode != 0 and "--dpo_ce_finetune expects true or false, got 'yes'" in bad.stderr, bad.stderr
    r = run(rec, env, *args)
    assert f"--dpo_ce_finetune false: no CE fine-tune on the winners; DPO starts from {LM_EXP}" in r.stdout
    assert not (rec / noce / "ce_winners").exists() and "CE fine-tune on winners" not in r.stdout
    cfg = yaml.safe_load((rec / noce / "config.yaml").read_text())
    assert cfg["init_model_dir"] == LM_EXP and cfg["dpo_conf"].get("dpo_weight", 1.0) == 1.0
    assert (rec / noce / ".done").is_file() and (rec / noce / "reward_valid" / "stats.json").is_file()


def test_stage_7_decodes_every_test_key_with_both_models(recipe_stage7):
    import json

    rec, env, r = recipe_stage7
    assert f"Stage 7: models to decode: {LM_EXP} {DPO_EXP}" in r.stdout
    for model in (LM_EXP, DPO_EXP):
        dec = rec / model / DECODE_TAG
        for task in ("audio_qa", "text_only"):
            d = dec / f"{task}_test"
            keys = set(json.loads((rec / "dump" / task / "test" / "data.json").read_text())["examples"])
            lines = (d / "text").read_text().splitlines()
            assert len(lines) == len(keys) and {ln.split(" ", 1)[0] for ln in lines} == keys
            assert len(list((d / "log").glob("decode.*.log"))) == 2  # a JOB=1:2 array
            scores = json.loads((d / "scores_understanding.json").read_text())
            assert scores and (d / "scores_understanding.md").is_file()
            assert f"--model_dir {model} " in (d / "log" / "decode.1.log").read_text()
        d = dec / "caption_to_audio_test"
        keys = set(json.loads((rec / "dump" / "caption_to_audio" / "test" / "data.json").read_text())["examples"])
        wavs = read_kaldi_file(d / "wav.scp")
        assert set(wavs) == keys and set(read_kaldi_file(d / "wav_vae.scp")) == keys
        for path in wavs.values():
            info = sf.info(str(rec / path) if not path.startswith("/") else path)
            assert info.samplerate == 16000 and info.frames > 0
        loss = json.loads((d / "heldout_loss.json").read_text())
        assert loss and (d / "heldout_loss.md").is_file()


def test_stages_6_and_7_rerun_is_a_no_op(recipe_stage7, repo_root):
    rec, env, _ = recipe_stage7
    dec = rec / LM_EXP / DECODE_TAG
    paths = [dec / "audio_qa_test" / "text", rec / DPO_EXP / "checkpoint.pth", rec / DPO_EXP / "pairs" / "train" / "pairs.json",
             rec / DPO_EXP / "ce_winners" / "checkpoint.pth", rec / DPO_EXP / DECODE_TAG / "caption_to_audio_test" / "wav.scp"]
    stamps = [p.stat().st_mtime_ns for p in paths]
    r = run(rec, env, *STAGE67, *_lm_opts(repo_root), *_dpo_opts(repo_root))
    out = r.stdout
    assert "Stage 6: evaluator exp/scorer_tagger already done" in out
    for part in ("train", "valid"):
        assert f"Stage 6: candidates {DPO_EXP}/cands/{part} already done" in out
        assert f"Stage 6: rewards {DPO_EXP}/pairs/{part} already done" in out
    assert f"Stage 6: CE fine-tune on winners: {DPO_EXP}/ce_winners already done" in out
    assert f"Stage 6: DPO training: {DPO_EXP} already done" in out
    for model in (LM_EXP, DPO_EXP):
        for task in ("audio_qa", "text_only", "caption_to_audio"):
            assert f"{model}/{DECODE_TAG}/{task}_test already done" in out
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_stage_7_inference_model_decodes_that_model_only(recipe_stage7, repo_root):
    rec, env, _ = recipe_stage7
    r = run(rec, env, "--stage", "7", "--stop_stage", "7", "--decode_tasks", "caption_to_audio",
            "--inference_opts", "--max_steps 8", "--inference_model", LM_EXP, *_lm_opts(repo_root))
    assert any(ln.endswith(f"Stage 7: models to decode: {LM_EXP}") for ln in r.stdout.splitlines()), r.stdout
    assert DPO_EXP not in r.stdout
    tag = "decode_cfg3.0_topk20_temp0.8_max_steps8"
    assert len(read_kaldi_file(rec / LM_EXP / tag / "caption_to_audio_test" / "wav.scp")) == 4
    assert not (rec / DPO_EXP / tag).exists()


# ---- stage 8: scoring ----
# (the evaluators' options are stage 6's, SCORERS: stage 8 reuses the evaluators stage 6 trained)
STAGE8 = ("--stage", "8", "--stop_stage", "8", "--decode_tasks", "audio_qa text_only caption_to_audio",
          "--inference_opts", "--max_steps 40", *SCORERS, "--num_result_samples", "2")
DECODE = f"{LM_EXP}/{DECODE_TAG}"
DPO_DECODE = f"{DPO_EXP}/{DECODE_TAG}"


@pytest.fixture(scope="module")
def recipe_stage8(recipe_stage7, repo_root):
    rec, env, _ = recipe_stage7
    r = run(rec, env, *STAGE8, *_lm_opts(repo_root))
    return rec, env, r


def test_every_finished_stage_leaves_its_wall_time(recipe_stage8):
    """exp/stage_times.tsv: one row per stage a run finished (start, stage, seconds), across runs; each run's log
    ends with its own stages' times."""
    import datetime

    rec, env, r = recipe_stage8
    lines = (rec / "exp" / "stage_times.tsv").read_text().splitlines()
    assert lines[0] == "started\tstage\tseconds"
    rows = [ln.split("\t") for ln in lines[1:]]
    assert {stage for _, stage, _ in rows} == {str(n) for n in range(1, 9)}, rows
    for started, _, secs in rows:
        datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%S")
        assert int(secs) >= 0
    assert [stage for _, stage, _ in rows[:2]] == ["1", "2"] and rows[-1][1] == "8"
    summary = r.stdout.strip().splitlines()[-1]
    assert "finished stages 8..8; wall time per stage: 8: " in summary and summary.endswith(
        " min (all runs: exp/stage_times.tsv)"), summary


def _scores(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_stage_8_scores_decodes_of_both_models_and_ceilings(recipe_stage8):
    rec, env, r = recipe_stage8
    for name in ("tagger", "clap_mini"):
        sdir = rec / "exp" / f"scorer_{name}"
        assert (sdir / "component.yaml").is_file() and (sdir / ".done").is_file()
        assert "test" in _scores(sdir / "results.json")  # its own accuracy on the first test set
        assert (sdir / "RESULTS.md").is_file()
        # stage 6 trained them with the same options: not trained again
        assert f"Stage 8: evaluator exp/scorer_{name} already done" in r.stdout
    dec = rec / DECODE / "caption_to_audio_test"
    gen = _scores(dec / "scores.json")
    dpo = rec / DPO_DECODE / "caption_to_audio_test"
    assert set(_scores(dpo / "scores.json")) == set(gen) and set(_scores(dpo / "scores_vae.json")) == set(gen)
    assert all(_scores(dpo / "scores.json")[k]["num_items"] == 4 for k in ("FD[scorer_tagger]", "CLAP[scorer_clap_mini]"))
    for key in ("FD[scorer_tagger]", "KL[scorer_tagger]", "event_recall[scorer_tagger]",
                "event_precision[scorer_tagger]", "FD[scorer_clap_mini]", "CLAP[scorer_clap_mini]"):
        assert key in gen, sorted(gen)
        assert gen[key]["backbone"] and gen[key]["sample_rate"] and "better" in gen[key]["direction"]
        assert gen[key]["num_items"] == 4  # every test clip, none skipped
    assert gen["KL[scorer_tagger]"]["details"]["direction"] == "KL(ref || gen)"
    assert set(_scores(dec / "scores_vae.json")) == set(gen)
    ceil = rec / "exp" / "ceilings_test"
    gt, codec, vae = (_scores(ceil / n / "scores.json") for n in ("ground_truth", "codec", "vae"))
    # the reference clips against themselves: no distance; their codec resynthesis: some
    assert abs(gt["FD[scorer_tagger]"]["value"]) < 1e-3 and abs(gt["KL[scorer_tagger]"]["value"]) < 1e-6
    assert codec["FD[scorer_tagger]"]["value"] > gt["FD[scorer_tagger]"]["value"]
    assert set(vae) == set(gt)
    # stage 3 already resynthesised the first test set: reused, not redone
    assert read_kaldi_file(ceil / "codec" / "wav.scp") == read_kaldi_file(rec / "dump" / "vae" / "test" / "wav.scp")
    assert "Stage 8: done; results table:" in r.stdout and "results_samples/" in r.stdout


def test_stage_8_writes_one_results_page_with_plots_and_samples(recipe_stage8):
    import matplotlib.image as mpimg

    rec, env, r = recipe_stage8
    md = (rec / "RESULTS.md").read_text()
    assert "ceiling: ground-truth test audio" in md and "ceiling: codec resynthesis + VAE enhancement" in md
    # the stage-5 and the DPO model side by side, in every table
    for label in ("ualm_train_ualm_tiny/decode_cfg3.0_topk20_temp0.8_max_steps40",
                  "ualm_dpo_train_ualm_tiny/decode_cfg3.0_topk20_temp0.8_max_steps40"):
        assert f"| FD[scorer_tagger] | {label} |" in md and f"| FD[scorer_tagger] | {label} + VAE |" in md
        assert f"| {label} | " in md  # held-out loss row
        assert f"audio_qa: {label}" in md and f"text_only: {label}" in md
    assert "| FD[scorer_tagger] |" in md and "Hz |" in md and "lower is better" in md
    assert "Held-out audio-token loss vs unigram baseline" in md
    assert "chance: majority" in md and "audio_qa:" in md and "text_only:" in md
    for png in ("metrics_test.png", "spectrograms_test.png"):
        img = mpimg.imread(rec / "results_images" / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0
        assert f"results_images/{png}" in md
    wavs = sorted(p.name for p in (rec / "results_samples" / "test").glob("*.wav"))
    # the reference and both models' generations (S1 = stage 5, S3 = DPO) of the first 2 test keys
    assert sum(".reference." in w for w in wavs) == 2 and sum(".generated." in w for w in wavs) == 2
    assert sum(".generated3." in w for w in wavs) == 2 and sum(".generated_vae." in w for w in wavs) == 2
    assert sum(".generated3_vae." in w for w in wavs) == 2  # the DPO model's VAE copy does not overwrite the base one
    for w in wavs:
        assert sf.info(str(rec / "results_samples" / "test" / w)).frames > 0


def test_stage_8_rerun_is_a_no_op(recipe_stage8, repo_root):
    rec, env, _ = recipe_stage8
    paths = [rec / DECODE / "caption_to_audio_test" / "scores.json", rec / "RESULTS.md",
             rec / "exp" / "ceilings_test" / "vae" / "scores.json", rec / "exp" / "scorer_tagger" / "model.pth"]
    stamps = [p.stat().st_mtime_ns for p in paths]
    r = run(rec, env, *STAGE8, *_lm_opts(repo_root))
    assert "evaluator exp/scorer_tagger already done" in r.stdout
    assert "Stage 8: generated audio:" in r.stdout and "already done" in r.stdout
    assert "RESULTS.md already up to date" in r.stdout
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_stage_8_results_dir_writes_the_page_elsewhere_and_leaves_the_recipe_page(recipe_stage8, repo_root):
    """--results_dir (run_quick.sh's results_quick): RESULTS.md, its plots and samples go there; the recipe's own
    RESULTS.md is not touched."""
    rec, env, _ = recipe_stage8
    own = rec / "RESULTS.md"
    stamp, text = own.stat().st_mtime_ns, own.read_text()
    r = run(rec, env, *STAGE8, *_lm_opts(repo_root), "--results_dir", "results_other")
    other = rec / "results_other"
    assert (other / "RESULTS.md").read_text().count("| FD[scorer_tagger] |") == text.count("| FD[scorer_tagger] |")
    assert (other / "results_images" / "spectrograms_test.png").is_file()
    assert len(list((other / "results_samples" / "test").glob("*.wav"))) == len(
        list((rec / "results_samples" / "test").glob("*.wav")))
    assert f"results table: {other}/RESULTS.md; plots: {other}/results_images/" in r.stdout
    assert own.stat().st_mtime_ns == stamp


def test_stage_8_missing_decode_file_fails_clearly(recipe_stage8, repo_root):
    rec, env, _ = recipe_stage8
    victim = rec / DECODE / "caption_to_audio_test" / "heldout_loss.json"
    moved = victim.with_name("heldout_loss.json.away")
    victim.rename(moved)
    try:
        r = run(rec, env, *STAGE8, *_lm_opts(repo_root), check=False)
    finally:
        moved.rename(victim)
    assert r.returncode != 0
    assert f"{DECODE}/caption_to_audio_test/heldout_loss.json is missing" in r.stderr
    # a decode dir that stage 7 never wrote
    r = run(rec, env, *STAGE8, *_lm_opts(repo_root), "--decode_tasks", "audio_qa audio_to_caption", check=False)
    assert r.returncode != 0 and f"{DECODE}/audio_to_caption_test is not finished" in r.stderr


def test_stage_8_scores_captions(recipe_stage8, repo_root):
    """audio_to_caption: decoded by stage 7, scored with BLEU/METEOR/ROUGE-L/CIDEr by stage 8 (empty
    captions of the tiny model included); the page is remade for these tasks only."""
    rec, env, _ = recipe_stage8
    opts = [a if a != "audio_qa text_only caption_to_audio" else "audio_to_caption" for a in STAGE8]
    opts[1] = "7"  # --stage 7
    r = run(rec, env, *opts, *_lm_opts(repo_root))
    scores = _scores(rec / DECODE / "audio_to_caption_test" / "scores.json")
    for m in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert m in scores and scores[m]["num_items"] == 4 and scores[m]["direction"] == "higher is better"
        assert 0.0 <= scores[m]["value"] <= 10.0
    md = (rec / "RESULTS.md").read_text()
    assert "Audio captioning (audio_to_caption)" in md and "| METEOR |" in md
    assert "ceiling" not in md and not list((rec / "results_images").glob("*.png"))
    assert "Stage 8: done" in r.stdout


def _scp_line_swap(scp: Path, key: str, new_value: str) -> str:
    """Point ``key`` of a wav.scp at ``new_value`` (other lines byte-identical); returns the old value."""
    lines = scp.read_text(encoding="utf-8").splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if ln.split(" ", 1)[0] == key)
    old = lines[idx].rstrip("\n").split(" ", 1)[1]
    lines[idx] = f"{key} {new_value}\n"
    scp.write_text("".join(lines), encoding="utf-8")
    return old


def _stage8_outputs(rec: Path) -> dict:
    """Every scores.json stage 8 writes for caption_to_audio on the test set -> its bytes."""
    dirs = [rec / d / "caption_to_audio_test" for d in (DECODE, DPO_DECODE)]
    files = [p for d in dirs for p in (d / "scores.json", d / "scores_vae" / "scores.json")]
    files += [rec / "exp" / "ceilings_test" / n / "scores.json" for n in ("ground_truth", "codec", "vae")]
    return {p: p.read_bytes() for p in files}


def test_stage_8_scores_again_when_a_decode_audio_changed(recipe_stage8, repo_root, tmp_path):
    """A decode's audio replaced after scoring (wav.scp changed): stage 8 re-scores that dir only and
    rebuilds RESULTS.md; putting the original audio back re-scores it back to the original values."""
    import numpy as np

    rec, env, _ = recipe_stage8
    dec = rec / DECODE / "caption_to_audio_test"
    scp = dec / "wav.scp"
    key = sorted(read_kaldi_file(scp))[0]
    before = _stage8_outputs(rec)
    orig = _scores(dec / "scores.json")
    stamp = (dec / "scores.json").stat().st_mtime_ns
    label = f"ualm_train_ualm_tiny/{DECODE_TAG}"
    fd_row = f"| FD[scorer_tagger] | {label} | {orig['FD[scorer_tagger]']['value']:.4f} |"
    # a different signal for one key: 2 s of white noise at the decode's rate, in a new file
    new_wav = tmp_path / f"{key}.noise.wav"
    rng = np.random.default_rng(0)
    sf.write(str(new_wav), (0.3 * rng.standard_normal(32000)).astype(np.float32), 16000)
    scp_bytes = scp.read_bytes()
    old_value = _scp_line_swap(scp, key, str(new_wav))
    try:
        r = run(rec, env, *STAGE8, *_lm_opts(repo_root))
    finally:
        scp.write_bytes(scp_bytes)  # later tests (and the restore run below) see the original decode
    rescoring = "the audio or the evaluators changed since"
    assert (f"Stage 8: generated audio: {rescoring} {DECODE}/caption_to_audio_test/scores.json "
            f"was written: scoring again") in r.stdout, r.stdout[-3000:]
    assert r.stdout.count(rescoring) == 1, r.stdout[-3000:]  # that dir only
    for what, out in (("generated audio", f"{DPO_DECODE}/caption_to_audio_test"),
                      ("VAE-enhanced audio", f"{DECODE}/caption_to_audio_test/scores_vae"),
                      ("VAE-enhanced audio", f"{DPO_DECODE}/caption_to_audio_test/scores_vae"),
                      ("ceiling: ground truth", "exp/ceilings_test/ground_truth"),
                      ("ceiling: codec resynthesis", "exp/ceilings_test/codec"),
                      ("ceiling: codec + VAE", "exp/ceilings_test/vae")):
        assert f"Stage 8: {what}: {out}/scores.json already done" in r.stdout, (what, out)
    after = _stage8_outputs(rec)
    changed = [p for p in before if after[p] != before[p]]
    assert changed == [dec / "scores.json"], changed  # the other decodes' and ceilings' scores untouched
    new = _scores(dec / "scores.json")
    assert (dec / "scores.json").stat().st_mtime_ns != stamp
    assert new["FD[scorer_tagger]"]["num_items"] == 4
    assert new["FD[scorer_tagger]"]["value"] != orig["FD[scorer_tagger]"]["value"]
    assert new["CLAP[scorer_clap_mini]"]["value"] != orig["CLAP[scorer_clap_mini]"]["value"]
    # the page shows the new score (it is rebuilt from the score files, not left stale)
    assert "RESULTS.md already up to date" not in r.stdout
    md = (rec / "RESULTS.md").read_text()
    assert f"| FD[scorer_tagger] | {label} | {new['FD[scorer_tagger]']['value']:.4f} |" in md
    assert fd_row not in md
    assert old_value in scp.read_text() and scp.read_bytes() == scp_bytes  # restored

    # the original audio back: scored again, to the original values
    r = run(rec, env, *STAGE8, *_lm_opts(repo_root))
    assert r.stdout.count(rescoring) == 1 and f"{rescoring} {DECODE}/caption_to_audio_test/" in r.stdout
    assert "RESULTS.md already up to date" not in r.stdout
    back = _scores(dec / "scores.json")
    assert set(back) == set(orig)
    for m in orig:
        assert back[m]["value"] == pytest.approx(orig[m]["value"], rel=1e-6, abs=1e-9), m
    assert fd_row in (rec / "RESULTS.md").read_text()
    assert {p: b for p, b in _stage8_outputs(rec).items() if p != dec / "scores.json"} == \
        {p: b for p, b in before.items() if p != dec / "scores.json"}
