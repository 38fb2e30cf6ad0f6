#!/usr/bin/env python3
"""Train one of the toolkit's own scorers (``tagger``, ``clap_mini``) on a recipe's corpus.

    python -m ualm_tk.bin.scorer_train --config conf/scorer/tagger.yaml \
        --data_dirs data/train --audio_dirs dump/audio/train \
        --valid_data_dir data/valid --valid_audio_dir dump/audio/valid \
        --output_dir exp/scorer_tagger [--init_from exp/scorer_tagger] [--seed 0]

Codec augmentation: repeat a data dir with another audio copy of the same clips (same utt ids,
same labels), e.g. ``--data_dirs data/train data/train --audio_dirs dump/audio/train
dump/vae/train``; likewise ``--valid_audio_dir dump/audio/valid dump/vae/valid`` validates (and
tunes the tagger's threshold) on both copies of the validation set.

Log-mels are computed once into ``--cache_dir`` (default ``<output_dir>/cache``). The run resumes
from ``<output_dir>/checkpoint.pth`` when present. The output dir becomes a scorer component
directory (``component.yaml`` + ``model.pth``, loadable with ``load_scorer``) plus ``train_log.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import List, Optional

import yaml
from espnet2.utils.types import str2bool

TRAIN_KEYS = ("batch_size", "max_epochs", "lr", "weight_decay", "warmup_steps", "grad_clip")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="YAML: scorer, scorer_conf, " + ", ".join(TRAIN_KEYS))
    p.add_argument("--data_dirs", nargs="+", required=True, help="Kaldi data dirs (metadata, text)")
    p.add_argument("--audio_dirs", nargs="+", required=True,
                   help="audio dirs (wav.scp), one per data dir; a repeated data dir adds another audio copy of it")
    p.add_argument("--valid_data_dir", required=True)
    p.add_argument("--valid_audio_dir", nargs="+", required=True,
                   help="one or more audio copies of the validation set (e.g. clean and codec-resynthesised)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--cache_dir", default=None, help="log-mel cache (default <output_dir>/cache)")
    p.add_argument("--init_from", default=None,
                   help="scorer dir whose backbone.* weights initialise this model (e.g. a trained tagger)")
    p.add_argument("--max_epochs", type=int, default=None, help="override the config")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", type=str2bool, default=True)
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import torch

    from ualm_tk.scoring.models import build_scorer, load_scorer, save_scorer, scorer_choices
    from ualm_tk.scoring.models.corpus import CorpusError, compute_logmels, read_clip_sets
    from ualm_tk.scoring.models.trainable import TrainableScorer
    from ualm_tk.scoring.models.training import train

    if len(args.data_dirs) != len(args.audio_dirs):
        raise SystemExit(f"scorer_train: {len(args.data_dirs)} --data_dirs but {len(args.audio_dirs)} --audio_dirs")
    with open(args.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    name = cfg.get("scorer")
    if name not in scorer_choices.classes:
        raise SystemExit(f"{args.config}: 'scorer' must be one of {sorted(scorer_choices.classes)}, got {name!r}")
    cls = scorer_choices.get_class(name)
    if not issubclass(cls, TrainableScorer):
        raise SystemExit(f"{args.config}: scorer '{name}' is not trainable here (it loads a local checkpoint)")
    unknown = set(cfg) - {"scorer", "scorer_conf", *TRAIN_KEYS}
    if unknown:
        raise SystemExit(f"{args.config}: unknown keys {sorted(unknown)}")
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    cache = Path(args.cache_dir) if args.cache_dir else out / "cache"

    need = dict(need_events=name == "tagger", need_captions=name == "clap_mini")
    try:
        train_clips = read_clip_sets(args.data_dirs, args.audio_dirs, **need)
        valid_clips = read_clip_sets([args.valid_data_dir] * len(args.valid_audio_dir), args.valid_audio_dir, **need)
    except CorpusError as e:
        raise SystemExit(f"scorer_train: {e}") from e
    conf = cls.conf_from_data(cfg.get("scorer_conf") or {}, train_clips)
    model = build_scorer(name, conf)
    logging.info("%s: %.2f M parameters; %d train / %d valid clips", name,
                 sum(p.numel() for p in model.parameters()) / 1e6, len(train_clips), len(valid_clips))
    if args.init_from and not (out / "checkpoint.pth").is_file():
        src = load_scorer(args.init_from).state_dict()
        own = model.state_dict()
        copied = {k: v for k, v in src.items() if k.startswith("backbone.") and k in own and own[k].shape == v.shape}
        if not copied:
            raise SystemExit(f"--init_from {args.init_from}: no backbone.* weights of matching shape")
        model.load_state_dict(copied, strict=False)
        logging.info("initialised %d backbone tensors from %s", len(copied), args.init_from)

    t0 = time.time()
    tag = "" if model.frontend.level_norm == "none" else f"_{model.frontend.level_norm}"
    train_feats = compute_logmels(train_clips, model.frontend, cache / f"train_{len(train_clips)}{tag}.pt")
    valid_feats = compute_logmels(valid_clips, model.frontend, cache / f"valid_{len(valid_clips)}{tag}.pt")
    feat_s = time.time() - t0
    tconf = {k: cfg[k] for k in TRAIN_KEYS if k in cfg}
    if args.max_epochs is not None:
        tconf["max_epochs"] = args.max_epochs
    summary = train(model, train_clips, train_feats, valid_clips, valid_feats, out, seed=args.seed,
                    resume=args.resume, **tconf)
    summary["after_training"] = model.after_training(valid_clips, valid_feats)
    summary.update(feature_s=feat_s, config=tconf, num_train=len(train_clips), num_valid=len(valid_clips),
                   data_dirs=args.data_dirs, audio_dirs=args.audio_dirs, valid_audio_dirs=args.valid_audio_dir,
                   init_from=args.init_from, seed=args.seed)
    save_scorer(model, out, meta={"best_epoch": summary["best_epoch"], "train_data": args.data_dirs,
                                       "train_audio": args.audio_dirs})
    with open(out / "train_log.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    logging.info("wrote scorer %s to %s (best epoch %d, %.1f s training)", name, out, summary["best_epoch"],
                 summary["wall_s_this_run"])


if __name__ == "__main__":
    main()
