"""Command-line options of audio sampling shared by the ``generate``, ``lm_decode`` and ``dpo_sample``
entry points (no torch import here, so ``--help`` and argument errors stay fast)."""

from __future__ import annotations

import argparse


def add_sampling_options(p: argparse.ArgumentParser, max_steps_help: str = "most decoded positions per example") -> None:
    """``--guidance_scale --cfg_plausibility --top_k --temperature --max_steps`` (paper defaults)."""
    p.add_argument("--guidance_scale", type=float, default=3.0, help="CFG λ for audio (<= 0: no CFG)")
    p.add_argument("--cfg_plausibility", type=float, default=0.0,
                   help="with CFG (λ != 1) sample only tokens whose conditional probability is >= this x the conditional "
                        "maximum (0: off). Off by default: on a peaked conditional (e.g. the codec's silence code) it "
                        "leaves one token and guidance does nothing; <eos> keeps its conditional probability under CFG anyway")
    p.add_argument("--top_k", type=int, default=20, help="audio top-k")
    p.add_argument("--temperature", type=float, default=0.8, help="audio sampling temperature")
    p.add_argument("--max_steps", type=int, default=500, help=max_steps_help)
