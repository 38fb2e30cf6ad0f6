#!/usr/bin/env python3
"""Write the global token layout: token_list, token_bias.json and the text tokenizer.

    python -m ualm_tk.bin.make_token_list --bpe_model data/token_list/bpe/bpe.model \\
        --num_codebooks 8 --codebook_size 1024 --out_dir data/token_list
    python -m ualm_tk.bin.make_token_list --hf_tokenizer_dir /models/Qwen2.5-1.5B \\
        --hf_pad_to 151936 --num_codebooks 8 --codebook_size 1024 --out_dir data/token_list

``out_dir`` then holds ``token_list`` (one token per line, line i = id i), ``token_bias.json``
(block starts), ``text_tokenizer.json`` and the tokenizer's files (``bpe.model`` or
``hf_tokenizer/``). Written once: re-running with the same inputs is a no-op; a different layout
in an existing ``out_dir`` is an error unless ``--overwrite true`` (models and data.json files
built on the old ids would silently break).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Write token_list + token_bias.json (specials | text | K audio streams).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--bpe_model", help="sentencepiece model from ualm_tk.bin.train_bpe")
    g.add_argument("--hf_tokenizer_dir", help="local Hugging Face tokenizer/model directory (the backbone's)")
    p.add_argument("--hf_pad_to", type=int, default=None,
                   help="extend the text block to this many rows (the backbone's embedding size)")
    p.add_argument("--num_codebooks", type=int, required=True, help="K, audio streams")
    p.add_argument("--codebook_size", type=int, required=True, help="N, codes per codebook")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--overwrite", type=str2bool, default=False, help="replace a different existing layout")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.tokens.layout import TOKEN_LIST, TokenLayout, TokenLayoutError
    from ualm_tk.tokens.text_tokenizer import HFTokenizer, SentencePieceTokenizer, TextTokenizerError

    if args.num_codebooks < 1 or args.codebook_size < 1:
        logging.error("--num_codebooks and --codebook_size must be >= 1 (got %d, %d)", args.num_codebooks, args.codebook_size)
        return 1
    if args.hf_pad_to is not None and args.hf_tokenizer_dir is None:
        logging.error("--hf_pad_to only applies with --hf_tokenizer_dir")
        return 1
    try:
        if args.bpe_model:
            tok = SentencePieceTokenizer(args.bpe_model)
        else:
            tok = HFTokenizer(args.hf_tokenizer_dir, pad_to=args.hf_pad_to)
        layout = TokenLayout(tok.vocab(), num_codebooks=args.num_codebooks, codebook_size=args.codebook_size)
        out = Path(args.out_dir)
        if (out / TOKEN_LIST).exists():
            try:
                old = TokenLayout.load(out)
            except TokenLayoutError as e:
                old = None
                logging.warning("existing layout in %s is unreadable: %s", out, e)
            if old is not None and old == layout and old.tokens == layout.tokens:
                logging.info("%s already holds this layout (%s); nothing to do", out, layout.describe())
                tok.save_to(out)
                return 0
            if not args.overwrite:
                logging.error("%s already holds a different token layout (%s); models and data.json built on it "
                              "would break. Use another --out_dir or --overwrite true", out,
                              old.describe() if old else "unreadable")
                return 1
            logging.warning("overwriting the token layout in %s", out)
        tok.save_to(out)
        layout.write(out)
    except (TextTokenizerError, TokenLayoutError, ValueError, OSError) as e:
        logging.error("%s", e)
        return 1
    logging.info("token layout %s: %s; bias %s", args.out_dir, layout.describe(), layout.token_bias)
    return 0


if __name__ == "__main__":
    sys.exit(main())
