#!/usr/bin/env python3
"""Evaluate an enhancement VAE on held-out pairs against plain resampling.

    python -m ualm_tk.bin.vae_evaluate --vae_dir exp/vae_mini/vae \
        --wav_lo_scp dump/vae/test/wav_lo.scp --ref_scp dump/audio/test/master.scp \
        --out_dir exp/vae_mini/eval_test [--num_plots 3]

For every key of ``--wav_lo_scp`` (16 kHz codec output; every key must be in ``--ref_scp``, the
48 kHz masters), both the VAE output and the input resampled to 48 kHz (windowed sinc,
ualm_tk.audio.resample) are compared with the master by ualm_tk.scoring.reconstruction:
log-spectral distance above 8 kHz, multi-resolution STFT distance and mel distance (all lower
is better). A stereo output is compared with a mono master through its channel mean.
Writes ``scores.json`` (per utterance and means), ``RESULTS.md`` and
``spectrograms/<key>.png`` (master / input / VAE) for the first ``--num_plots`` keys.
"""
import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from tqdm import tqdm

from ualm_tk.audio.io import AudioError, load_audio
from ualm_tk.audio.resample import resample
from ualm_tk.bin.vae_enhance import enhance_array, load_input
from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file
from ualm_tk.scoring.reconstruction import log_spectral_distance, mel_distance, multires_stft_distance
from ualm_tk.utils.component_dir import ComponentDirError
from ualm_tk.vae import VAEInputError, load_vae

logger = logging.getLogger("vae_evaluate")
LSD_FMIN = 8000.0
METRICS = ("lsd_above_8k_db", "mrstft_distance", "mel_distance")
SYSTEMS = ("resampled_input", "vae")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae_dir", required=True)
    p.add_argument("--wav_lo_scp", required=True, help="scp of the VAE inputs (codec output)")
    p.add_argument("--ref_scp", required=True, help="scp of the masters at the VAE's output rate")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_plots", type=int, default=3, help="spectrogram PNGs for the first N keys")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def score(ref: np.ndarray, est: np.ndarray, sr: int) -> Dict[str, float]:
    """Metrics of ``est [C', L]`` against ``ref [C, L]`` (stereo est vs mono ref: channel mean)."""
    if est.shape[0] != ref.shape[0] and ref.shape[0] == 1:
        est = est.mean(axis=0, keepdims=True)
    return {
        "lsd_above_8k_db": log_spectral_distance(ref, est, sr, fmin=LSD_FMIN),
        "mrstft_distance": multires_stft_distance(ref, est),
        "mel_distance": mel_distance(ref, est, sr),
    }


def plot_spectrograms(path: Path, key: str, sr: int, rows) -> None:
    """One PNG: a log-magnitude spectrogram (first channel) per (title, wav [C, L]) row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.4 * len(rows)), sharex=True)
    n_fft, hop = 2048, 256
    for ax, (title, wav) in zip(axes, rows):
        x = torch.from_numpy(np.ascontiguousarray(wav[0], dtype=np.float32))
        spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5)).numpy()
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=db.max(),
                  extent=[0, wav.shape[1] / sr, 0, sr / 2000])
        ax.set_ylabel("kHz")
        ax.set_title(f"{key}: {title}", fontsize=9)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_markdown(path: Path, result: dict) -> None:
    m = result["mean"]
    lines = [
        f"# Enhancement VAE vs plain resampling ({result['num_utterances']} utterances)",
        "",
        f"VAE: `{result['vae_dir']}`; inputs `{result['wav_lo_scp']}`; masters `{result['ref_scp']}`.",
        f"All metrics against the master at {result['sample_rate']} Hz, lower is better "
        "(ualm_tk.scoring.reconstruction).",
        "",
        "| system | LSD > 8 kHz (dB) ↓ | MR-STFT distance ↓ | mel distance ↓ |",
        "|---|---|---|---|",
    ]
    for sysname in SYSTEMS:
        lines.append(f"| {sysname} | " + " | ".join(f"{m[sysname][k]:.3f}" for k in METRICS) + " |")
    lines += [
        "",
        f"VAE better than resampling on: " + ", ".join(
            f"{k} {'yes' if result['vae_better'][k] else 'NO'}" for k in METRICS
        ),
        f"VAE real-time factor: {result['vae_real_time_factor']:.4f} (CPU, {result['num_threads']} thread(s))",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.num_threads)
    try:
        vae = load_vae(args.vae_dir)
        lo_scp = read_kaldi_file(args.wav_lo_scp)
        ref_scp = read_kaldi_file(args.ref_scp)
    except (ComponentDirError, KaldiFileError) as e:
        sys.exit(f"error: {e}")
    if not lo_scp:
        sys.exit(f"error: {args.wav_lo_scp}: no entries")
    missing = sorted(set(lo_scp) - set(ref_scp))
    if missing:
        sys.exit(f"error: {len(missing)} key(s) of {args.wav_lo_scp} missing from {args.ref_scp}, "
                 f"first: {missing[0]}")
    sr = vae.output_sample_rate
    out = Path(args.out_dir)
    per_utt, compute, seconds = {}, 0.0, 0.0
    for i, key in enumerate(tqdm(sorted(lo_scp), desc="vae_evaluate", unit="file", mininterval=5)):
        try:
            lo = load_input(key, lo_scp[key], vae, resample_input=False)  # [1, L]
            ref, ref_sr = load_audio(ref_scp[key])  # [C, L']
        except (AudioError, VAEInputError) as e:
            sys.exit(f"error: {e}")
        if ref_sr != sr:
            sys.exit(f"error: key {key}: master {ref_scp[key]} is {ref_sr} Hz, the VAE outputs {sr} Hz")
        t0 = time.perf_counter()
        est = enhance_array(vae, lo, key)  # [C, L']
        compute += time.perf_counter() - t0
        seconds += lo.shape[1] / vae.input_sample_rate
        base = resample(lo, vae.input_sample_rate, sr)  # [1, L']
        per_utt[key] = {"resampled_input": score(ref, base, sr), "vae": score(ref, est, sr)}
        if i < args.num_plots:
            plot_spectrograms(out / "spectrograms" / f"{key}.png", key, sr, [
                (f"master ({ref.shape[0]} ch)", ref),
                ("input resampled to 48 kHz", base),
                (f"VAE output ({est.shape[0]} ch)", est),
            ])
    mean = {s: {k: float(np.mean([u[s][k] for u in per_utt.values()])) for k in METRICS} for s in SYSTEMS}
    result = dict(
        vae_dir=str(args.vae_dir), wav_lo_scp=str(args.wav_lo_scp), ref_scp=str(args.ref_scp),
        sample_rate=sr, num_utterances=len(per_utt), num_threads=args.num_threads,
        metrics={"lsd_above_8k_db": "log-spectral distance in dB, bins >= 8 kHz, n_fft 2048",
                 "mrstft_distance": "mean over (512,128),(1024,256),(2048,512) of SC + L1 log magnitude",
                 "mel_distance": "mean L1 of natural-log mel (80 bands, 64 ms, 16 ms hop)"},
        mean=mean,
        vae_better={k: mean["vae"][k] < mean["resampled_input"][k] for k in METRICS},
        vae_real_time_factor=compute / max(seconds, 1e-9),
        per_utterance=per_utt,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_markdown(out / "RESULTS.md", result)
    logger.info("\n%s", (out / "RESULTS.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
