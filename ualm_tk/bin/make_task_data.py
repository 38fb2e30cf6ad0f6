#!/usr/bin/env python3
"""Build one task's data.json from a data dir, the codec codes and the token list (stage 4).

    python -m ualm_tk.bin.make_task_data --task caption_to_audio --data_dir dump/audio/train \\
        --codes_scp dump/codes/train/codes.scp --token_dir data/token_list \\
        --out dump/caption_to_audio/train/data.json

Tasks: caption_to_audio (text + codes), audio_to_caption (text + wav.scp + utt2num_samples),
audio_qa (qa/{question,answer,qa2utt,qtype} + audio), text_only (text_only/{question,answer,qtype}).
Format of data.json: ualm_tk/data/task_data.py. Exit status 1 with a message naming the file and
key for bad input (unknown task, empty text, missing codes, too-long example, ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from espnet2.utils.types import int_or_none, str2bool


def get_parser() -> argparse.ArgumentParser:
    from ualm_tk.data.task_templates import TASK_TEMPLATES

    p = argparse.ArgumentParser(
        description="Build dump/<task>/<set>/data.json for a task template.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", required=True, help=f"one of: {', '.join(sorted(TASK_TEMPLATES))}")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir (dump/audio/<set>)")
    p.add_argument("--codes_scp", default=None, help="kaldiio scp of int code arrays (needed by caption_to_audio)")
    p.add_argument("--codes_layout", choices=["TK", "KT"], default="TK", help="axis order of the stored code arrays")
    p.add_argument("--token_dir", required=True, help="from make_token_list (token_list, token_bias.json, tokenizer)")
    p.add_argument("--out", required=True, help="output data.json")
    p.add_argument("--pattern", default="delay", help="pattern the example lengths are computed with")
    p.add_argument("--max_len", type=int_or_none, default=None, help="longest example in positions (the model's context)")
    p.add_argument("--max_text_len", type=int_or_none, default=None, help="longest caption/question/answer in tokens")
    p.add_argument("--feat_frame_rate", type=float, default=25.0, help="audio encoder frames per second")
    p.add_argument("--fs", type=int_or_none, default=None, help="expected audio sample rate (checked per file)")
    p.add_argument("--check_audio", type=str2bool, default=True, help="read every audio header (rate, length)")
    p.add_argument("--task_marker", type=str2bool, default=False, help="prepend <system> <text> <task_X> <eos>")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.kaldi_files import KaldiFileError
    from ualm_tk.data.task_data import build_task_data, length_stats
    from ualm_tk.data.task_templates import TaskDataError, get_template
    from ualm_tk.patterns import build_pattern
    from ualm_tk.tokens.layout import TokenLayout, TokenLayoutError, TokenLayoutMismatch
    from ualm_tk.tokens.text_tokenizer import TextTokenizerError, load_text_tokenizer

    try:
        get_template(args.task)
        pattern = build_pattern(args.pattern)
        layout = TokenLayout.load(args.token_dir)
        tokenizer = load_text_tokenizer(args.token_dir)
        data = build_task_data(
            args.task,
            args.data_dir,
            layout,
            tokenizer,
            pattern,
            pattern_name=args.pattern,
            codes_scp=args.codes_scp,
            codes_layout=args.codes_layout,
            feat_frame_rate=args.feat_frame_rate,
            sample_rate=args.fs,
            max_len=args.max_len,
            max_text_len=args.max_text_len,
            task_marker=args.task_marker,
            check_audio=args.check_audio,
        )
        data.save(args.out)
    except (TaskDataError, KaldiFileError, TokenLayoutError, TokenLayoutMismatch, TextTokenizerError, ValueError, OSError) as e:
        logging.error("%s", e)
        return 1
    st = length_stats(data)
    logging.info(
        "%s: task %s, %d examples, %d positions (mean %.1f, max %d) -> %s",
        args.data_dir, args.task, st["num_examples"], st["total"], st["mean"], st["max"], args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
