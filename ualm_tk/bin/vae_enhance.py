#!/usr/bin/env python3
"""Enhance 16 kHz mono audio (codec output) to 48 kHz with a trained VAE.

    python -m ualm_tk.bin.vae_enhance --vae_dir exp/vae_mini/vae --wav_scp decode/wav.scp \
        --out_dir decode/wav_48k

Writes ``<out_dir>/wav/<key>.wav`` (the VAE's rate and channel count) and ``<out_dir>/wav.scp``.
Input at another rate is an error naming the key, unless ``--resample_input true``.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ualm_tk.audio.io import AudioError, load_audio, save_audio
from ualm_tk.audio.resample import apply_channel_policy, resample
from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file, write_kaldi_file
from ualm_tk.utils.component_dir import ComponentDirError
from ualm_tk.vae import AbsVAE, VAEInputError, load_vae

logger = logging.getLogger("vae_enhance")


def str2bool(v: str) -> bool:
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae_dir", required=True, help="trained VAE directory (component.yaml + model.pth)")
    p.add_argument("--wav_scp", required=True, help="Kaldi scp of the input audio (key path)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--resample_input", type=str2bool, default=False,
                   help="resample inputs at another rate (and down-mix multi-channel) instead of failing")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def load_input(key: str, path: str, vae: AbsVAE, resample_input: bool) -> np.ndarray:
    """Read one input as ``[1, L]`` at the VAE's input rate; clear errors otherwise."""
    wav, sr = load_audio(path)  # [C, L]
    if sr != vae.input_sample_rate or wav.shape[0] != 1:
        if not resample_input:
            raise VAEInputError(
                f"key {key}: {path} is {sr} Hz with {wav.shape[0]} channel(s); the VAE takes mono "
                f"{vae.input_sample_rate} Hz (pass --resample_input true to convert)"
            )
        wav = resample(apply_channel_policy(wav, "mono"), sr, vae.input_sample_rate)
    return wav


def enhance_array(vae: AbsVAE, wav: np.ndarray, key: str = "") -> np.ndarray:
    """``[1, L]`` at the input rate -> ``[C, L']`` at the output rate."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).unsqueeze(0)  # [1, 1, L]
    try:
        y = vae.enhance(x, vae.input_sample_rate)  # [1, C, L']
    except VAEInputError as e:
        raise VAEInputError(f"key {key}: {e}") from None
    return y[0].numpy()


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.num_threads)
    try:
        vae = load_vae(args.vae_dir)
        entries = read_kaldi_file(args.wav_scp)
    except (ComponentDirError, KaldiFileError) as e:
        sys.exit(f"error: {e}")
    if not entries:
        sys.exit(f"error: {args.wav_scp}: no entries")
    out = Path(args.out_dir)
    scp, seconds_in, compute = {}, 0.0, 0.0
    for key, path in tqdm(sorted(entries.items()), desc="vae_enhance", unit="file", mininterval=5):
        try:
            wav = load_input(key, path, vae, args.resample_input)
            t0 = time.perf_counter()
            y = enhance_array(vae, wav, key)
            compute += time.perf_counter() - t0
        except (AudioError, VAEInputError) as e:
            sys.exit(f"error: {args.wav_scp}: {e}")
        seconds_in += wav.shape[1] / vae.input_sample_rate
        dst = (out / "wav" / f"{key}.wav").resolve()
        clipped = save_audio(dst, y, vae.output_sample_rate)
        if clipped:
            logger.warning("key %s: %d samples clipped to [-1, 1]", key, clipped)
        scp[key] = str(dst)
    write_kaldi_file(out / "wav.scp", scp)
    logger.info(
        "enhanced %d files (%.1f s of audio) to %d Hz x %d ch in %.1f s (real-time factor %.3f): %s",
        len(scp), seconds_in, vae.output_sample_rate, vae.channels, compute,
        compute / max(seconds_in, 1e-9), out / "wav.scp",
    )


if __name__ == "__main__":
    main()
