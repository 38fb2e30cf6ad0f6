#!/usr/bin/env python3
"""Train the text BPE model (sentencepiece, byte fallback) on Kaldi text files.

    python -m ualm_tk.bin.train_bpe --input data/train/text data/train/qa/question \\
        data/train/qa/answer data/train/text_only/question data/train/text_only/answer \\
        --vocab_size 1000 --out_dir data/token_list/bpe
    # -> data/token_list/bpe/bpe.model, bpe.vocab

The values of the Kaldi files (keys dropped) are the training sentences, in the order given;
the same input gives the same model file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a sentencepiece BPE model (byte fallback) on Kaldi text files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", nargs="+", required=True, help="Kaldi files '<key> <text>' (or plain lines, see --input_format)")
    p.add_argument("--vocab_size", type=int, required=True, help="number of pieces (256 byte pieces + <sp_unk> included)")
    p.add_argument("--out_dir", required=True, help="writes bpe.model and bpe.vocab here")
    p.add_argument("--input_format", choices=["kaldi", "plain"], default="kaldi")
    p.add_argument("--model_type", choices=["bpe", "unigram"], default="bpe")
    p.add_argument("--character_coverage", type=float, default=1.0)
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.kaldi_files import KaldiFileError
    from ualm_tk.tokens.text_tokenizer import TextTokenizerError, read_training_text, train_bpe

    if args.vocab_size < 258:
        logging.error("--vocab_size %d is too small: byte fallback alone takes 256 pieces + <sp_unk>", args.vocab_size)
        return 1
    try:
        sentences = read_training_text(args.input, kaldi=args.input_format == "kaldi")
        model = train_bpe(sentences, args.vocab_size, args.out_dir, model_type=args.model_type,
                          character_coverage=args.character_coverage)
    except (KaldiFileError, TextTokenizerError, OSError) as e:
        logging.error("%s", e)
        return 1
    logging.info("%d sentences from %d file(s) -> %s (%d pieces)", len(sentences), len(args.input), model, args.vocab_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
