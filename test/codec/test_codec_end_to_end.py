"""Stage 3 + 4 end to end on real wav files: train (ESPnet GANTrainer) -> resume -> export ->
tokenise (CLI) -> decode / resynthesise / evaluate; and the CLIs' errors on bad audio.

Training runs in-process through ``ualm_tk.bin.codec_train.main`` (importing ESPnet's task
modules costs ~10 s of CPU per process); stage 4 commands run as real subprocesses."""

from __future__ import annotations

import logging
import subprocess
from contextlib import contextmanager
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ualm_tk.codec import load_codec
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file

SR = 16000


def _run(args, env, cwd, ok=True):
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{args[2]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@contextmanager
def _captured_log():
    """Collect the root logger's messages (ESPnet's trainer logs through it)."""
    lines = []

    class _H(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    h = _H(level=logging.INFO)
    root = logging.getLogger()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(h)
        root.setLevel(old)


def _train(args):
    from ualm_tk.bin.codec_train import main

    with _captured_log() as lines:
        main(args)
    return "\n".join(lines)


def _make_clips(d: Path) -> dict:
    """Real audio: espeak-ng speech and sox tones / sweeps / noise, 16 kHz mono 16-bit."""
    d.mkdir(parents=True)
    clips = {}
    for i, text in enumerate(["a quiet dog sleeps", "seven small boats", "the kettle is boiling"]):
        raw, out = d / f"raw{i}.wav", d / f"speech{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(out)], check=True)
        raw.unlink()
        clips[f"speech{i}"] = out
    for name, synth in [("tone", ["sine", "440"]), ("sweep", ["sine", "200-5000"]), ("noise", ["pinknoise"])]:
        out = d / f"{name}.wav"
        subprocess.run(["sox", "-n", "-r", str(SR), "-b", "16", str(out), "synth", "1.3", *synth, "vol", "0.4"], check=True)
        clips[name] = out
    return clips


@pytest.fixture(scope="module")
def trained(tmp_path_factory, repo_root, python_exe):
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{repo_root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    tmp = tmp_path_factory.mktemp("e2e")
    clips = _make_clips(tmp / "audio")
    for name, keys in [("train", sorted(clips)), ("valid", sorted(clips)[:2])]:
        (tmp / name).mkdir()
        write_kaldi_file(tmp / name / "wav.scp", {k: str(clips[k]) for k in keys})
        write_kaldi_file(tmp / name / "utt2num_samples", {k: str(sf.info(str(clips[k])).frames) for k in keys})
    # the recipe's config, shrunk to a few steps of a tiny model
    conf = yaml.safe_load((repo_root / "egs2/TEMPLATE/ualm1/conf/codec/mini_rvq.yaml").read_text())
    conf["codec_conf"]["codec_conf"].update(channels=[4, 8, 8, 16], latent_dim=8, num_codebooks=4, codebook_size=16)
    conf.update(num_iters_per_epoch=2, batch_size=3, valid_batch_size=2, segment_length=8000, log_interval=1)
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp / "exp" / "codec_tiny"
    train = ["--config", str(tmp / "tiny.yaml"), "--train_dir", str(tmp / "train"),
             "--valid_dir", str(tmp / "valid"), "--exp_dir", str(exp)]
    first = _train(train + ["--max_epoch", "1"])
    epoch1 = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    reporter1 = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]
    # interrupted after epoch 1; the second call resumes from checkpoint.pth
    second = _train(train + ["--max_epoch", "2", "--resume", "true"])
    return dict(tmp=tmp, env=env, exp=exp, clips=clips, first=first, second=second, epoch1=epoch1,
                reporter1=reporter1, py=python_exe)


def test_training_shows_progress_plots_resumes_and_exports(trained):
    exp, first, second = trained["exp"], trained["first"], trained["second"]
    assert "1/1epoch started" in first and "1epoch results" in first
    assert "1epoch:train:1-1batch" in first and "mel_loss=" in first  # reporter progress lines
    # resumed: epoch 2 only, continuing the curve of epoch 1
    assert "2/2epoch started" in second and "1/2epoch started" not in second
    ckpt = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ckpt["reporter"]["epoch"] == 2
    assert ckpt["reporter"]["stats"][1] == trained["reporter1"]["stats"][1]
    pngs = {p.name for p in (exp / "images").glob("*.png")}
    assert {"mel_loss.png", "time_l1.png", "loss.png"} <= pngs
    assert len([p for p in pngs if p.startswith("spec_")]) == 2  # the 2 validation clips
    # the exported codec is a component directory load_codec restores
    codec = load_codec(exp / "codec")
    assert (codec.num_codebooks, codec.codebook_size, codec.frame_rate) == (4, 16, 50.0)
    doc = yaml.safe_load((exp / "codec" / "component.yaml").read_text())
    assert doc["registry"] == "codec" and doc["name"] == "mini_rvq" and doc["meta"]["bitrate_bps"] == 800.0
    # training changed the weights between epoch 1 and the end
    state2 = torch.load(exp / "2epoch.pth", map_location="cpu", weights_only=True)
    assert any(not torch.equal(trained["epoch1"][k], state2[k]) for k in state2 if k.endswith("weight"))


def test_tokenise_decode_resynth_evaluate(trained):
    tmp, env, py, exp = trained["tmp"], trained["env"], trained["py"], trained["exp"]
    codec_dir, scp = str(exp / "codec"), str(tmp / "train" / "wav.scp")
    tok = [py, "-m", "ualm_tk.bin.codec_tokenize", "--codec_dir", codec_dir, "--wav_scp", scp]
    _run(tok + ["--out_dir", str(tmp / "codes_b1"), "--batch_size", "1"], env, tmp)
    _run(tok + ["--out_dir", str(tmp / "codes_b4"), "--batch_size", "4"], env, tmp)
    a = dict(kaldiio.load_scp(str(tmp / "codes_b1" / "codes.scp")))
    b = dict(kaldiio.load_scp(str(tmp / "codes_b4" / "codes.scp")))
    assert sorted(a) == sorted(trained["clips"])
    frames = read_kaldi_file(tmp / "codes_b1" / "utt2num_frames")
    for k, clip in trained["clips"].items():
        assert a[k].dtype == np.int16 and a[k].shape == (int(frames[k]), 4)  # [T, K]
        assert int(frames[k]) == -(-sf.info(str(clip)).frames // 320)
        assert np.array_equal(a[k], b[k])  # deterministic, batch-independent
        assert a[k].min() >= 0 and a[k].max() < 16
    # decode codes -> wav
    _run([py, "-m", "ualm_tk.bin.codec_decode", "--codec_dir", codec_dir, "--codes_scp",
          str(tmp / "codes_b1" / "codes.scp"), "--out_dir", str(tmp / "dec"), "--num_codebooks", "2"], env, tmp)
    dec = read_kaldi_file(tmp / "dec" / "wav.scp")
    for k in a:
        info = sf.info(dec[k])
        assert info.samplerate == SR and info.channels == 1 and info.frames == a[k].shape[0] * 320
    # resynthesis keeps lengths
    _run([py, "-m", "ualm_tk.bin.codec_resynth", "--codec_dir", codec_dir, "--wav_scp", scp,
          "--out_dir", str(tmp / "res")], env, tmp)
    res = read_kaldi_file(tmp / "res" / "wav.scp")
    for k, clip in trained["clips"].items():
        assert sf.info(res[k]).frames == sf.info(str(clip)).frames
    # evaluation table, JSON and spectrograms
    ev = _run([py, "-m", "ualm_tk.bin.codec_evaluate", "--codec_dir", codec_dir, "--wav_scp", scp,
               "--out_dir", str(tmp / "eval"), "--max_utts", "2", "--num_plots", "1", "--naive_bits", "8", "4"], env, tmp)
    md = (tmp / "eval" / "RESULTS.md").read_text()
    assert "| mini_rvq K=4 | 800 |" in md and "naive mu-law 4 bit @ 200 Hz | 800" in md
    assert len(list((tmp / "eval" / "images").glob("spec_*.png"))) == 1
    assert "perplexity" in ev.stdout


def _bad_file(tmp: Path, kind: str) -> Path:
    p = tmp / f"bad_{kind}.wav"
    if kind == "rate":
        sf.write(p, 0.1 * np.ones(22050, dtype=np.float32), 22050, subtype="PCM_16")
    elif kind == "stereo":
        sf.write(p, 0.1 * np.ones((16000, 2), dtype=np.float32), SR, subtype="PCM_16")
    elif kind == "empty":
        sf.write(p, np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    elif kind == "nan":
        x = np.zeros(16000, dtype=np.float32)
        x[100] = np.nan
        sf.write(p, x, SR, subtype="FLOAT")
    return p


@pytest.mark.parametrize("kind, message", [("rate", "22050 Hz; the codec takes 16000 Hz"),
                                           ("stereo", "2 channels"), ("empty", "no samples"),
                                           ("nan", "NaN")])
def test_tokenise_rejects_bad_audio_naming_the_file(trained, kind, message):
    from ualm_tk.codec.scp_ops import CodecDataError, tokenize_scp

    tmp = trained["tmp"]
    bad = _bad_file(tmp, kind)
    scp = tmp / f"{kind}.scp"
    write_kaldi_file(scp, {"ok": str(trained["clips"]["tone"]), "zbad": str(bad)})
    codec = load_codec(trained["exp"] / "codec")
    with pytest.raises(CodecDataError, match=message) as err:
        tokenize_scp(codec, scp, tmp / f"out_{kind}")
    assert str(bad) in str(err.value) and "'zbad'" in str(err.value)
    assert not (tmp / f"out_{kind}" / "codes.scp").exists()
    if kind in ("rate", "stereo"):  # asked to resample / mix down: accepted
        tokenize_scp(codec, scp, tmp / f"out_{kind}", resample_ok=True)
        assert read_kaldi_file(tmp / f"out_{kind}" / "utt2num_frames")["zbad"] == "50"


def test_tokenise_cli_exits_nonzero_naming_the_file(trained):
    tmp, env, py = trained["tmp"], trained["env"], trained["py"]
    bad = _bad_file(tmp, "rate")
    write_kaldi_file(tmp / "cli_rate.scp", {"ok": str(trained["clips"]["tone"]), "zbad": str(bad)})
    proc = _run([py, "-m", "ualm_tk.bin.codec_tokenize", "--codec_dir", str(trained["exp"] / "codec"),
                 "--wav_scp", str(tmp / "cli_rate.scp"), "--out_dir", str(tmp / "out_cli")], env, tmp, ok=False)
    assert proc.returncode != 0
    assert f"codec_tokenize: utterance 'zbad': {bad} is 22050 Hz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_espnet_dac_trains_with_the_gan_trainer_and_exports(trained, repo_root):
    """The paper-style DAC YAML, shrunk: two optimizers, ESPnet's GANTrainer, export as espnet_gan."""
    tmp, env, py = trained["tmp"], trained["env"], trained["py"]
    conf = yaml.safe_load((repo_root / "egs2/TEMPLATE/ualm1/conf/codec/dac_16k.yaml").read_text())
    gp = conf["codec_conf"]["generator_params"]
    gp.update(hidden_dim=16, encdec_n_filters=4, encdec_lstm=1, quantizer_n_q=4, quantizer_bins=32,
              quantizer_kmeans_iters=2, quantizer_target_bandwidth=[0.5, 1.0])
    dp = conf["codec_conf"]["discriminator_params"]["msmpmb_discriminator_params"]
    dp.update(fft_sizes=[512, 256], periods=[2, 3])
    dp["period_discriminator_params"].update(channels=4, max_downsample_channels=16)
    dp["band_discriminator_params"]["channel"] = 4
    conf.update(batch_size=2, valid_batch_size=2, num_iters_per_epoch=1, max_epoch=1, num_workers=0,
                segment_length=4800, keep_nbest_models=1)
    (tmp / "dac_tiny.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp / "exp" / "codec_dac_tiny"
    log = _train(["--config", str(tmp / "dac_tiny.yaml"), "--train_dir", str(tmp / "train"),
                  "--valid_dir", str(tmp / "valid"), "--exp_dir", str(exp)])
    assert "discriminator_forward_time" in log  # both turns of the GAN trainer ran
    codec = load_codec(exp / "codec")
    assert yaml.safe_load((exp / "codec" / "component.yaml").read_text())["name"] == "espnet_gan"
    assert (codec.num_codebooks, codec.codebook_size, codec.frame_rate) == (4, 32, 50.0)
    wav = torch.from_numpy(sf.read(str(trained["clips"]["tone"]), dtype="float32")[0])[None, None]
    codes = codec.encode(wav)
    assert codes.shape == (1, 4, codec.num_frames(wav.shape[-1]))
    assert codec.decode(codes).shape[-1] == codes.shape[-1] * 320
