"""Training through the ESPnet task: loss goes down, a real run resumes, exports, enhances, evaluates."""
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ualm_tk.audio.io import audio_info
from ualm_tk.data.kaldi_files import read_kaldi_file



TINY_YAML = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/ualm1/conf/vae/tiny.yaml"


def _args(tmp_path, extra=()):
    from ualm_tk.tasks.vae import VAETask

    return VAETask.get_parser().parse_args(
        ["--config", str(TINY_YAML), "--output_dir", str(tmp_path / "exp"), *extra]
    )


def test_training_steps_through_the_task_reduce_the_loss(tmp_path, pair_dir, one_thread):
    from ualm_tk.tasks.vae import VAETask
    from ualm_tk.audio.io import load_audio

    torch.manual_seed(0)
    args = _args(tmp_path)
    model = VAETask.build_model(args)
    opt_g, opt_d = VAETask.build_optimizers(args, model)
    # one fixed batch of real pairs through the task's own preprocessor and collate function
    pre = VAETask.build_preprocess_fn(args, train=False)
    collate = VAETask.build_collate_fn(args, train=True)
    lo_scp, hi_scp = read_kaldi_file(pair_dir / "lo.scp"), read_kaldi_file(pair_dir / "master.scp")
    items = []
    for key in ["square_st", "saw_mono"]:  # harmonic: the high band is predictable
        lo, hi = load_audio(lo_scp[key])[0], load_audio(hi_scp[key])[0]
        items.append((key, pre(key, {"wav_lo": lo[0], "wav_hi": hi.T})))
    _, batch = collate(items)
    assert batch["wav_lo"].shape == (2, 4000) and batch["wav_hi"].shape == (2, 12000, 2)

    def reconstruction():
        model.eval()
        with torch.no_grad():
            stats = model(forward_generator=True, **batch)["stats"]
        model.train()
        return float(stats["mrstft_loss"] + stats["mel_loss"])

    before = reconstruction()
    for _ in range(25):  # the GAN trainer's order: discriminator turn, then generator turn
        for opt, turn in ((opt_d, False), (opt_g, True)):
            out = model(forward_generator=turn, **batch)
            assert out["optim_idx"] == (0 if turn else 1)
            out["loss"].backward()
            opt.step()
            opt_g.zero_grad()
            opt_d.zero_grad()
    after = reconstruction()
    assert after < 0.7 * before, (before, after)


def _train(python_exe, env, exp, pair_dir, max_epoch, resume):
    cmd = [
        python_exe, "-m", "ualm_tk.bin.vae_train", "--config", str(TINY_YAML),
        "--output_dir", str(exp), "--max_epoch", str(max_epoch), "--resume", resume,
    ]
    for split in ("train", "valid"):
        cmd += [f"--{split}_data_path_and_name_and_type", f"{pair_dir}/lo.scp,wav_lo,sound",
                f"--{split}_data_path_and_name_and_type", f"{pair_dir}/master.scp,wav_hi,sound",
                f"--{split}_shape_file", f"{pair_dir}/lo.scp"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr + proc.stdout


def test_train_resume_export_enhance_evaluate(tmp_path, pair_dir, python_exe, subprocess_env, one_thread):
    from ualm_tk.bin import vae_enhance, vae_evaluate, vae_export
    from ualm_tk.vae import load_vae

    env = dict(subprocess_env, OMP_NUM_THREADS="1")
    exp = tmp_path / "exp"
    log1 = _train(python_exe, env, exp, pair_dir, 1, "false")
    assert "1/1epoch started" in log1 and (exp / "1epoch.pth").exists()
    # an interrupted run continues from its checkpoint: epoch 1 is not redone
    log2 = _train(python_exe, env, exp, pair_dir, 2, "true")
    assert "2/2epoch started" in log2 and "1/2epoch started" not in log2
    ckpt = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert len(ckpt["reporter"]["stats"]) == 2  # the curve continues: both epochs in one reporter
    for curve in ("mrstft_loss", "kl_loss", "discriminator_loss", "adversarial_loss"):
        assert (exp / "images" / f"{curve}.png").stat().st_size > 1000

    vae_export.main(["--exp_dir", str(exp), "--out_dir", str(exp / "vae"), "--checkpoint",
                     str(exp / "2epoch.pth")])
    vae = load_vae(exp / "vae")
    from ualm_tk.tasks.vae import VAETask

    trained = VAETask.build_model(_args(tmp_path)).vae.eval()
    trained.load_state_dict({k[4:]: v for k, v in torch.load(exp / "2epoch.pth").items()
                             if k.startswith("vae.")})
    wav = 0.1 * torch.randn(1, 1, 8000)
    assert torch.equal(vae.enhance(wav), trained.enhance(wav))

    # without --checkpoint: the best checkpoint by the config's criterion
    vae_export.main(["--exp_dir", str(exp), "--out_dir", str(exp / "vae_best")])
    doc = yaml.safe_load((exp / "vae_best" / "component.yaml").read_text())
    assert doc["meta"]["source_checkpoint"].endswith("valid.mrstft_loss.best.pth")
    with pytest.raises(SystemExit, match="config.yaml: missing"):
        vae_export.main(["--exp_dir", str(tmp_path), "--out_dir", str(tmp_path / "x")])

    out = tmp_path / "enh"
    vae_enhance.main(["--vae_dir", str(exp / "vae"), "--wav_scp", str(pair_dir / "lo.scp"),
                      "--out_dir", str(out)])
    scp = read_kaldi_file(out / "wav.scp")
    lo = read_kaldi_file(pair_dir / "lo.scp")
    assert sorted(scp) == sorted(lo)
    for key in scp:
        info, src = audio_info(scp[key]), audio_info(lo[key])
        assert (info.samplerate, info.channels, info.frames) == (48000, 2, 3 * src.frames)

    # wrong input rate: a clear error naming the key, unless asked to resample
    with pytest.raises(SystemExit, match=r"key chirp_st: .* 48000 Hz .* --resample_input true"):
        vae_enhance.main(["--vae_dir", str(exp / "vae"), "--wav_scp", str(pair_dir / "master.scp"),
                          "--out_dir", str(tmp_path / "bad")])
    vae_enhance.main(["--vae_dir", str(exp / "vae"), "--wav_scp", str(pair_dir / "master.scp"),
                      "--out_dir", str(tmp_path / "resampled"), "--resample_input", "true"])
    assert len(read_kaldi_file(tmp_path / "resampled" / "wav.scp")) == 4

    ev = tmp_path / "eval"
    vae_evaluate.main(["--vae_dir", str(exp / "vae"), "--wav_lo_scp", str(pair_dir / "lo.scp"),
                       "--ref_scp", str(pair_dir / "master.scp"), "--out_dir", str(ev), "--num_plots", "2"])
    result = json.loads((ev / "scores.json").read_text())
    assert result["num_utterances"] == 4 and set(result["per_utterance"]) == set(lo)
    for system in ("vae", "resampled_input"):
        assert all(np.isfinite(v) and v > 0 for v in result["mean"][system].values())
    # the resampled stand-in input has nothing above 8 kHz: a large LSD there
    assert result["mean"]["resampled_input"]["lsd_above_8k_db"] > 20
    md = (ev / "RESULTS.md").read_text()
    assert re.search(r"\| vae \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|", md)
    pngs = sorted(p.name for p in (ev / "spectrograms").glob("*.png"))
    assert pngs == ["chirp_st.png", "noise_mono.png"]


def test_evaluate_rejects_missing_master(tmp_path, pair_dir):
    from ualm_tk.bin import vae_evaluate
    from ualm_tk.vae import build_vae, save_vae

    save_vae(build_vae("residual_vae", {}), tmp_path / "vae", "residual_vae", {})
    ref = read_kaldi_file(pair_dir / "master.scp")
    ref.pop("saw_mono")
    (tmp_path / "ref.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(ref.items())))
    with pytest.raises(SystemExit, match="1 key.* missing from .*ref.scp, first: saw_mono"):
        vae_evaluate.main(["--vae_dir", str(tmp_path / "vae"), "--wav_lo_scp", str(pair_dir / "lo.scp"),
                           "--ref_scp", str(tmp_path / "ref.scp"), "--out_dir", str(tmp_path / "ev")])
