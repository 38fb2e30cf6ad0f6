#!/usr/bin/env python3
"""Pre-train the LM's audio encoder on the corpus's categorical question labels (stage 5a).

    python -m ualm_tk.bin.audio_encoder_pretrain --lm_config conf/train_ualm.yaml \\
        --config conf/audio_encoder_pretrain.yaml --qtypes data/qtypes.json \\
        --train_dir dump/audio/train --valid_dir dump/audio/valid [--test_dir dump/audio/test] \\
        --output_dir exp/audio_encoder_qa

The encoder is the one ``--lm_config`` names (``audio_encoder``, ``audio_encoder_conf``; its
``freeze`` is ignored here), so the LM can start from it with
``--init_param <output_dir>/encoder/model.pth::audio_encoder``. ``--config`` (YAML) may set
``max_epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_epochs``, ``grad_clip``,
``patience``, ``seed``, ``cpu_bf16`` (``auto`` / ``true`` / ``false``: the forward under bfloat16 autocast on
CPU; ``auto`` where the CPU computes bfloat16 natively, :mod:`ualm_tk.utils.cpu_precision`), ``shift_max_s`` and
``eq_db`` (training-batch augmentation, :mod:`ualm_tk.audio_encoder.augment`; 0 = off),
``frame_event_weight`` (the frame-level event loss on the data dirs' ``metadata`` events; 0 = off),
``tempo_rates`` / ``tempo_prob`` / ``tempo_max_ratio`` (time-stretched copies whose rate label moves with
them, :mod:`ualm_tk.audio_encoder.tempo_relabel`; off by default),
``num_heads``, ``dropout``; other keys are an error.

A ``mel_transformer_qa`` encoder (:mod:`ualm_tk.audio_encoder.qa_readout`) brings its own question heads and
frame head: they are the ones trained here and saved with it, so the LM reads their answers; its
``num_answers`` / ``num_event_classes`` must fit the corpus (an error names the right values).

Writes ``<output_dir>/encoder/`` (component dir of the best valid epoch), ``results.json``,
``RESULTS.md`` (accuracy per question type with the majority-answer share beside it, per set;
the training curve) and ``checkpoint.pth`` (a killed run resumes from it).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

import yaml

HEAD_KEYS = ("num_heads", "dropout")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm_config", required=True, help="LM training YAML whose audio_encoder is pre-trained")
    p.add_argument("--config", default=None, help="pre-training YAML (see above); default: built-in defaults")
    p.add_argument("--qtypes", required=True, help="qtypes.json of stage 1 (categorical types and answers)")
    p.add_argument("--train_dir", required=True, help="formatted data dir with wav.scp and qa/")
    p.add_argument("--valid_dir", required=True)
    p.add_argument("--test_dir", default=None, help="also report accuracy here (never used for selection)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: every CPU this process may use)")
    p.add_argument("--log_level", default="INFO")
    return p


def read_confs(lm_config: str, config: Optional[str]):
    from ualm_tk.audio_encoder.qa_pretrain import TRAIN_DEFAULTS

    with open(lm_config, encoding="utf-8") as f:
        lm = yaml.safe_load(f) or {}
    if not lm.get("audio_encoder"):
        raise SystemExit(f"{lm_config}: has no audio_encoder: nothing to pre-train")
    enc_conf = dict(lm.get("audio_encoder_conf") or {})
    enc_conf.pop("freeze", None)
    train_conf = dict(TRAIN_DEFAULTS)
    head_conf = dict(num_heads=4, dropout=0.1)
    if config:
        with open(config, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        unknown = sorted(set(doc) - set(train_conf) - set(head_conf))
        if unknown:
            raise SystemExit(f"{config}: unknown key(s) {unknown} (known: {sorted(set(train_conf) | set(head_conf))})")
        for k, v in doc.items():
            (head_conf if k in head_conf else train_conf)[k] = v
    return lm["audio_encoder"], enc_conf, train_conf, head_conf


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import os

    import torch

    from ualm_tk.audio_encoder import build_audio_encoder, save_audio_encoder
    from ualm_tk.audio_encoder.qa_pretrain import (
        QALabelSpace, QAPretrainError, build_classifier, evaluate, pretrain, read_labelled_clips, results_markdown)
    from ualm_tk.utils.cpu_precision import resolve_cpu_bf16

    torch.set_num_threads(args.num_threads if args.num_threads > 0 else len(os.sched_getaffinity(0)))
    name, enc_conf, train_conf, head_conf = read_confs(args.lm_config, args.config)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        space = QALabelSpace.from_qtypes_json(args.qtypes)
        torch.manual_seed(train_conf["seed"])
        encoder = build_audio_encoder(name, enc_conf)
        sr = encoder.sample_rate
        events = train_conf["frame_event_weight"] > 0
        train = read_labelled_clips(args.train_dir, space, sr, events)
        valid = read_labelled_clips(args.valid_dir, space, sr, events)
        test = read_labelled_clips(args.test_dir, space, sr, events) if args.test_dir else None
        if events:
            space.event_classes = sorted({e.label for c in train for e in c.events})
            if not space.event_classes:
                raise QAPretrainError(f"{args.train_dir}/metadata: no timed events (frame_event_weight needs them)")
    except QAPretrainError as e:
        raise SystemExit(f"audio_encoder_pretrain: {e}")
    try:
        model = build_classifier(encoder, space, **head_conf)
    except QAPretrainError as e:  # the LM config's encoder does not fit the corpus or the heads' config
        raise SystemExit(f"audio_encoder_pretrain: {args.lm_config}: {e}")
    with open(out / "label_space.json", "w", encoding="utf-8") as f:
        json.dump(space.to_json(), f, indent=1)
    logging.info("pre-training %s (%s) on %d question types: %.2f M parameters (encoder %.2f M)", name, enc_conf,
                 len(space.qtypes), sum(p.numel() for p in model.parameters()) / 1e6,
                 sum(p.numel() for p in encoder.parameters()) / 1e6)
    try:
        state = pretrain(model, train, valid, space, out, train_conf)
    except QAPretrainError as e:
        raise SystemExit(f"audio_encoder_pretrain: {e}")
    model.load_state_dict(torch.load(out / "best.pth", map_location="cpu"))
    results = {"valid": state["best"]}
    if test is not None:
        results["test"] = evaluate(model, test, space, train_conf["batch_size"],
                                   resolve_cpu_bf16(train_conf["cpu_bf16"]))
        logging.info("test accuracy %.3f over %d questions", results["test"]["accuracy"], results["test"]["count"])
    save_audio_encoder(encoder, out / "encoder", meta=dict(
        pretrained_on=str(args.train_dir), task="categorical question labels", best_epoch=state["best_epoch"],
        valid_accuracy=state["best"]["accuracy"]))
    with open(out / "results.json", "w", encoding="utf-8") as f:
        json.dump(dict(results=results, history=state["history"], best_epoch=state["best_epoch"],
                       train_conf=train_conf, head_conf=head_conf), f, indent=1)
    (out / "RESULTS.md").write_text(results_markdown(space, results, state), encoding="utf-8")
    logging.info("encoder: %s/encoder (LM: --init_param %s/encoder/model.pth::audio_encoder); table: %s/RESULTS.md",
                 out, out, out)


if __name__ == "__main__":
    main()
