"""Held-out audio-token loss of a UALM next to a per-stream unigram baseline.

    python -m ualm_tk.bin.lm_heldout_loss --model_dir exp/ualm_tiny \\
        --data_json dump/caption_to_audio/test/data.json --train_codes dump/codes/train/codes.scp \\
        --output_dir exp/ualm_tiny/decode_x/caption_to_audio/test

Model: teacher-forced cross-entropy on the assistant audio tokens (no CFG dropout), per stream
and the mean over streams, nats/token (:mod:`ualm_tk.inference.teacher_forced`). Baseline:
per-stream code frequencies counted on ``--train_codes`` with add-one smoothing, evaluated on the
same held-out codes (:mod:`ualm_tk.scoring.unigram`). Writes ``heldout_loss.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import List, Optional

logger = logging.getLogger("ualm_tk.bin.lm_heldout_loss")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True)
    p.add_argument("--data_json", required=True, help="held-out dump/caption_to_audio/<set>/data.json")
    p.add_argument("--train_codes", required=True, help="codes.scp of the training set (for the unigram baseline)")
    p.add_argument("--train_codes_layout", default=None, choices=["TK", "KT"],
                   help="layout of the train codes (default: the data.json's codes_layout)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_examples", type=int, default=None, help="score only the first M keys (byte order)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.kaldi_files import KaldiFileError, byte_order_key, read_kaldi_file
    from ualm_tk.data.task_data import TaskData, load_codes
    from ualm_tk.data.task_templates import TaskDataError
    from ualm_tk.inference.teacher_forced import audio_token_nll
    from ualm_tk.models.generation import load_model_dir
    from ualm_tk.scoring.unigram import UnigramCodes
    from ualm_tk.tokens.layout import TokenLayoutMismatch

    if args.batch_size < 1:
        raise SystemExit(f"--batch_size must be >= 1, got {args.batch_size}")
    try:
        data = TaskData.load(args.data_json)
        train = read_kaldi_file(args.train_codes)
    except (TaskDataError, KaldiFileError) as e:
        raise SystemExit(str(e))
    if not train:
        raise SystemExit(f"--train_codes {args.train_codes}: no entries")
    keys = sorted(data.keys(), key=byte_order_key)[: args.max_examples]
    audio_refs = []
    for k in keys:
        refs = [s.codes for s in data.segments(k) if s.role == "assistant" and s.modality == "audio"]
        if not refs:
            raise SystemExit(f"{args.data_json}: key '{k}': no assistant audio segment (task {data.task}); give a caption_to_audio data.json")
        audio_refs += refs
    overlap = sorted(set(train) & {data.meta(k).get("utt", k) for k in keys})
    if overlap:
        logger.warning("%d held-out utterance(s) are also in --train_codes (e.g. %s): the baseline is not held out",
                       len(overlap), ", ".join(overlap[:3]))

    model, layout, _ = load_model_dir(args.model_dir, args.device)
    try:
        data.check_layout(layout)
    except TokenLayoutMismatch as e:
        raise SystemExit(str(e))
    K, N = layout.num_codebooks, layout.codebook_size
    uni = UnigramCodes(K, N)
    train_layout = args.train_codes_layout or data.codes_layout
    try:
        for utt, ref in train.items():
            uni.add(load_codes(ref, train_layout), f"{args.train_codes}: key '{utt}'")
        base = uni.nll(data.codes_loader()(r) for r in audio_refs)
    except (TaskDataError, ValueError) as e:
        raise SystemExit(str(e))
    logger.info("unigram: %d train frames from %s; %.4f nats/token on %d held-out frames",
                uni.num_frames, args.train_codes, base["mean"], base["num_frames"])
    lm = audio_token_nll(model, data, keys, args.batch_size)
    logger.info("model: %.4f nats/token (mean over %d streams)", lm["mean"], K)
    res = dict(
        metric="teacher-forced cross-entropy on held-out audio tokens, nats/token (lower is better); no CFG dropout",
        data_json=args.data_json, model_dir=args.model_dir, train_codes=args.train_codes,
        num_examples=len(keys), num_frames=lm["num_frames"], num_codebooks=K, codebook_size=N,
        uniform_nats=math.log(N),
        model=dict(per_stream=lm["per_stream"], mean=lm["mean"], stream0_decode_vocab=lm["stream0_decode_vocab"],
                   mean_decode_vocab=lm["mean_decode_vocab"]),
        unigram=dict(per_stream=base["per_stream"], mean=base["mean"], train_frames=uni.num_frames, smoothing="add-one"),
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout_loss.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    head = "| | " + " | ".join(f"stream {k}" for k in range(K)) + " | mean |"
    lines = [f"# Held-out audio-token loss: {args.data_json}", "",
             f"{res['metric']}; {len(keys)} examples, {res['num_frames']} frames; uniform = ln {N} = {res['uniform_nats']:.3f}.", "",
             head, "|---|" + "---:|" * (K + 1),
             "| model | " + " | ".join(f"{v:.3f}" for v in lm["per_stream"]) + f" | {lm['mean']:.3f} |",
             "| model, stream 0 over codebook 0 + <eos> (what audio decoding samples from) | "
             + " | ".join([f"{lm['stream0_decode_vocab']:.3f}"] + [f"{v:.3f}" for v in lm["per_stream"][1:]]) + f" | {lm['mean_decode_vocab']:.3f} |",
             "| unigram (train codes, add-one) | " + " | ".join(f"{v:.3f}" for v in base["per_stream"]) + f" | {base['mean']:.3f} |", ""]
    md = "\n".join(lines)
    (out / "heldout_loss.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
