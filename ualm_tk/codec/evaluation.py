"""Quality of a codec on held-out clips, against the naive coder at the same or higher bitrate.

Per clip: the codec's resynthesis (all K codebooks, and the first K' for each K' in
``partial_codebooks``) and every naive configuration of :func:`configs_at_bitrate` are scored
with :mod:`ualm_tk.scoring.reconstruction` (mel distance, multi-resolution STFT distance, SI-SDR).
Per codebook: usage (share of entries used at least once) and perplexity (exp of the entropy of
the code distribution, in entries; at most codebook_size). Results: ``results.json``,
``RESULTS.md`` and spectrogram PNGs (original / codec / best naive) of a few clips.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ualm_tk.codec.abs_codec import AbsCodec
from ualm_tk.codec.scp_ops import load_for_codec
from ualm_tk.data.kaldi_files import read_kaldi_file
from ualm_tk.scoring.naive_coder import NaiveCoder, configs_at_bitrate
from ualm_tk.scoring.reconstruction import mel_distance, multires_stft_distance, si_sdr

logger = logging.getLogger(__name__)
METRICS = ("mel_distance", "multires_stft_distance", "si_sdr")
DIRECTION = {"mel_distance": "lower", "multires_stft_distance": "lower", "si_sdr": "higher"}


def score(ref: np.ndarray, est: np.ndarray, sr: int) -> Dict[str, float]:
    return dict(
        mel_distance=mel_distance(ref, est, sr),
        multires_stft_distance=multires_stft_distance(ref, est),
        si_sdr=si_sdr(ref, est),
    )


def codebook_stats(counts: np.ndarray) -> Dict[str, float]:
    """``counts [N]`` of one codebook -> usage share and perplexity."""
    total = counts.sum()
    p = counts[counts > 0] / max(total, 1)
    return dict(usage=float((counts > 0).mean()), perplexity=float(math.exp(-(p * np.log(p)).sum())),
                entries_used=int((counts > 0).sum()))


def plot_spectrograms(path: Path, title: str, rows: Dict[str, np.ndarray], sr: int) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), sharex=True)
    for ax, (name, wav) in zip(np.atleast_1d(axes), rows.items()):
        x = torch.from_numpy(np.asarray(wav[0], dtype=np.float32))
        spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5)).numpy()
        ax.imshow(db, origin="lower", aspect="auto", vmin=db.max() - 80, vmax=db.max(),
                  extent=[0, x.shape[0] / sr, 0, sr / 2000], cmap="magma")
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9)
    np.atleast_1d(axes)[-1].set_xlabel("s")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate_codec(
    codec: AbsCodec,
    wav_scp: Path,
    out_dir: Path,
    resample_ok: bool = False,
    partial_codebooks: Sequence[int] = (1, 2, 4),
    naive_bits: Sequence[int] = (8, 6, 4, 3, 2),
    num_plots: int = 3,
    max_utts: Optional[int] = None,
    codec_label: str = "codec",
) -> Dict:
    entries = read_kaldi_file(wav_scp)
    keys = sorted(entries)[:max_utts] if max_utts else sorted(entries)
    sr, K, N = codec.sample_rate, codec.num_codebooks, codec.codebook_size
    naive: List[NaiveCoder] = configs_at_bitrate(codec.bitrate, naive_bits)
    partial = [k for k in partial_codebooks if 0 < k < K]
    systems = [f"{codec_label} K={K}"] + [f"{codec_label} K'={k}" for k in partial] + [c.name for c in naive]
    per_sys: Dict[str, List[Dict[str, float]]] = {s: [] for s in systems}
    counts = np.zeros((K, N), dtype=np.int64)
    total_sec = 0.0
    out_dir = Path(out_dir)
    for i, key in enumerate(tqdm(keys, desc=f"evaluate {wav_scp}")):
        wav = load_for_codec(key, entries[key], codec, resample_ok)  # [1, L]
        total_sec += wav.shape[1] / sr
        x = torch.from_numpy(wav)[None]  # [1, 1, L]
        codes = codec.encode(x)  # [1, K, T]
        for k in range(K):
            counts[k] += np.bincount(codes[0, k].numpy(), minlength=N)
        outs = {}
        y = codec.decode(codes)[0, :, : wav.shape[1]].numpy()
        outs[systems[0]] = y
        per_sys[systems[0]].append(score(wav, y, sr))
        for k in partial:
            yk = codec.decode(codes[:, :k])[0, :, : wav.shape[1]].numpy()
            per_sys[f"{codec_label} K'={k}"].append(score(wav, yk, sr))
        for c in naive:
            yn = c.roundtrip(wav, sr)
            outs[c.name] = yn
            per_sys[c.name].append(score(wav, yn, sr))
        if i < num_plots:
            best_naive = max(naive, key=lambda c: per_sys[c.name][-1]["si_sdr"])
            plot_spectrograms(
                out_dir / "images" / f"spec_{key}.png", key,
                {"original": wav, f"{systems[0]} ({codec.bitrate:.0f} bit/s)": outs[systems[0]],
                 f"{best_naive.name} ({best_naive.bitrate} bit/s)": outs[best_naive.name]}, sr,
            )
    rows = []
    bitrate = {systems[0]: codec.bitrate}
    bitrate.update({f"{codec_label} K'={k}": codec.bitrate * k / K for k in partial})
    bitrate.update({c.name: c.bitrate for c in naive})
    for s in systems:
        row = dict(system=s, bitrate_bps=float(bitrate[s]))
        for m in METRICS:
            row[m] = float(np.mean([d[m] for d in per_sys[s]]))
        rows.append(row)
    best_naive = {m: (min if DIRECTION[m] == "lower" else max)(
        (r for r in rows if r["system"].startswith("naive")), key=lambda r: r[m])["system"] for m in METRICS}
    cb = [dict(codebook=k, **codebook_stats(counts[k])) for k in range(K)]
    result = dict(
        wav_scp=str(wav_scp), num_utterances=len(keys), total_seconds=round(total_sec, 2),
        sample_rate=sr, codec=codec.meta(), systems=rows, best_naive_per_metric=best_naive,
        codebooks=cb, metric_direction=DIRECTION,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "RESULTS.md").write_text(to_markdown(result))
    logger.info("wrote %s and %s", out_dir / "results.json", out_dir / "RESULTS.md")
    return result


def to_markdown(r: Dict) -> str:
    lines = [
        f"# Codec reconstruction on {r['wav_scp']}",
        "",
        f"{r['num_utterances']} clips, {r['total_seconds']} s, compared at {r['sample_rate']} Hz. "
        "Metrics from ualm_tk.scoring.reconstruction: mel distance (L1 of natural-log 80-band mel, "
        "lower is better), MR-STFT distance (SC + log-magnitude L1 over 3 resolutions, lower is "
        "better), SI-SDR in dB (higher is better). Naive coders: low-pass + down-sample + mu-law PCM "
        "at the same or a higher bitrate.",
        "",
        "| system | bitrate (bit/s) | mel distance ↓ | MR-STFT ↓ | SI-SDR (dB) ↑ |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in r["systems"]:
        lines.append(f"| {row['system']} | {row['bitrate_bps']:.0f} | {row['mel_distance']:.3f} | "
                     f"{row['multires_stft_distance']:.3f} | {row['si_sdr']:.2f} |")
    lines += ["", "| codebook | entries used | usage | perplexity |", "|---:|---:|---:|---:|"]
    for c in r["codebooks"]:
        lines.append(f"| {c['codebook']} | {c['entries_used']} / {r['codec']['codebook_size']} | "
                     f"{c['usage']:.3f} | {c['perplexity']:.1f} |")
    return "\n".join(lines) + "\n"
