#!/usr/bin/env python3
"""Make stand-in VAE inputs from masters: mono, down-sampled, mu-law (see ualm_tk.vae.degrade).

    python -m ualm_tk.bin.vae_degrade --wav_scp dump/audio/train/master.scp \
        --out_dir dump/vae_standin/train [--sample_rate 16000] [--mu_law_bits 8]

Writes ``<out_dir>/wav/<key>.wav`` and ``<out_dir>/wav.scp`` (same keys as the input).
Use the codec's resynthesis instead once a codec is trained.
"""
import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ualm_tk.audio.io import AudioError, load_audio, save_audio
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file
from ualm_tk.vae.degrade import degrade


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wav_scp", required=True, help="Kaldi scp of master audio (key path)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--sample_rate", type=int, default=16000)
    p.add_argument("--mu_law_bits", type=int, default=8)
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    entries = read_kaldi_file(args.wav_scp)
    if not entries:
        sys.exit(f"{args.wav_scp}: no entries")
    out = Path(args.out_dir)
    scp = {}
    for key, path in tqdm(sorted(entries.items()), desc="degrade", unit="file", mininterval=5):
        try:
            wav, sr = load_audio(path)
        except AudioError as e:
            sys.exit(f"{args.wav_scp}: key {key}: {e}")
        dst = (out / "wav" / f"{key}.wav").resolve()
        save_audio(dst, degrade(wav, sr, args.sample_rate, args.mu_law_bits), args.sample_rate)
        scp[key] = str(dst)
    write_kaldi_file(out / "wav.scp", scp)
    logging.info("wrote %d files: %s", len(scp), out / "wav.scp")


if __name__ == "__main__":
    main()
