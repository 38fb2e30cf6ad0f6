#!/usr/bin/env python3
"""Stage 3: train a codec through ESPnet's GAN codec task, then export it.

    python -m ualm_tk.bin.codec_train --config conf/codec/mini_rvq.yaml \
        --train_dir dump/audio/train --valid_dir dump/audio/valid --exp_dir exp/codec_mini \
        [--resume true] [--ngpu 0] [any other ESPnet training option, e.g. --max_epoch 20]

Writes ESPnet's outputs in ``exp_dir`` (config.yaml, checkpoint.pth, *epoch.pth, images/*.png loss
curves per epoch, then images/spec_<utt>.png original/codec spectrograms of a few validation clips,
train.log-style logging to stderr) and the trained codec as a component directory
``exp_dir/codec`` (``component.yaml`` + ``model.pth``) that ``ualm_tk.codec.load_codec`` restores.
``--export_only true`` skips training and (re-)exports.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool

from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a codec (ESPnet GANCodecTask + mini_rvq) and export exp_dir/codec",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", required=True, help="training YAML (conf/codec/*.yaml)")
    p.add_argument("--train_dir", required=True, help="dir with wav.scp (+ utt2num_samples) of the training set")
    p.add_argument("--valid_dir", required=True, help="dir with wav.scp of the validation set")
    p.add_argument("--exp_dir", required=True, help="output dir (ESPnet output_dir); codec goes to exp_dir/codec")
    p.add_argument("--resume", type=str2bool, default=True, help="continue from exp_dir/checkpoint.pth")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--export_only", type=str2bool, default=False)
    p.add_argument("--checkpoint", default=None, help="model file to export (default: best, else latest)")
    p.add_argument("--num_spectrograms", type=int, default=3,
                   help="write exp_dir/images/spec_<utt>.png (original / codec) for this many validation clips")
    return p


def write_shape_file(d: Path, out: Path) -> int:
    """Check ``d/wav.scp`` and write ESPnet's shape file (``utt num_samples``) to ``out``.

    Lengths come from ``d/utt2num_samples`` (stage 2) when present, else from the file headers.
    """
    import soundfile as sf

    scp = d / "wav.scp"
    if not scp.is_file():
        raise SystemExit(f"codec_train: {scp} does not exist (run stage 2 first)")
    entries = read_kaldi_file(scp)
    if not entries:
        raise SystemExit(f"codec_train: {scp} is empty")
    lengths = read_kaldi_file(d / "utt2num_samples") if (d / "utt2num_samples").is_file() else {}
    shapes = {}
    for key, path in entries.items():
        if not Path(path).is_file():
            raise SystemExit(f"codec_train: {scp}: utterance '{key}': audio file {path} does not exist")
        shapes[key] = lengths[key] if key in lengths else str(sf.info(path).frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_kaldi_file(out, shapes)
    return len(entries)


def main(cmd: Optional[List[str]] = None) -> None:
    args, rest = get_parser().parse_known_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import torch

    from ualm_tk.tasks.codec import CodecTask, export_codec

    torch.set_num_threads(args.num_threads)

    exp_dir = Path(args.exp_dir)
    if not Path(args.config).is_file():
        raise SystemExit(f"codec_train: config {args.config} does not exist")
    if not args.export_only:
        n_train = write_shape_file(Path(args.train_dir), exp_dir / "shapes" / "train_shape")
        n_valid = write_shape_file(Path(args.valid_dir), exp_dir / "shapes" / "valid_shape")
        logging.info("training codec on %d utterances (%d for validation) -> %s", n_train, n_valid, exp_dir)
        espnet_args = [
            "--config", str(args.config),
            "--output_dir", str(exp_dir),
            "--ngpu", str(args.ngpu),
            "--resume", str(args.resume).lower(),
            "--train_data_path_and_name_and_type", f"{Path(args.train_dir) / 'wav.scp'},audio,sound",
            "--valid_data_path_and_name_and_type", f"{Path(args.valid_dir) / 'wav.scp'},audio,sound",
            "--train_shape_file", str(exp_dir / "shapes" / "train_shape"),
            "--valid_shape_file", str(exp_dir / "shapes" / "valid_shape"),
        ] + rest
        CodecTask.main(cmd=espnet_args)
    out = export_codec(exp_dir, exp_dir / "codec", args.checkpoint)
    logging.info("codec ready: %s", out)
    if args.num_spectrograms > 0:
        plot_validation_clips(out, Path(args.valid_dir) / "wav.scp", exp_dir / "images", args.num_spectrograms)


def plot_validation_clips(codec_dir: Path, wav_scp: Path, out_dir: Path, n: int) -> None:
    """Spectrograms (original / resynthesised) of the first ``n`` clips of ``wav_scp``."""
    import torch

    from ualm_tk.codec import load_codec
    from ualm_tk.codec.evaluation import plot_spectrograms
    from ualm_tk.codec.scp_ops import load_for_codec

    codec = load_codec(codec_dir)
    entries = read_kaldi_file(wav_scp)
    for key in sorted(entries)[:n]:
        wav = load_for_codec(key, entries[key], codec, resample_ok=True)  # [1, L]
        with torch.no_grad():
            y = codec.decode(codec.encode(torch.from_numpy(wav)[None]))[0, :, : wav.shape[1]].numpy()
        plot_spectrograms(out_dir / f"spec_{key}.png", key,
                          {"original": wav, f"codec ({codec.bitrate:.0f} bit/s)": y}, codec.sample_rate)
    logging.info("wrote %d spectrograms to %s", min(n, len(entries)), out_dir)


if __name__ == "__main__":
    main()
