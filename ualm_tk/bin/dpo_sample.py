"""Sample n candidates per caption_to_audio prompt for DPO (stage 6, step 1).

    python -m ualm_tk.bin.dpo_sample --model_dir exp/ualm_tiny --data_json dump/caption_to_audio/train/data.json \\
        --codec_dir exp/codec_mini_rvq/codec --num_samples 4 --output_dir exp/ualm_dpo_tiny/cands/train/cands.1 \\
        [--nj 4 --job 1] [--num_prompts 200] [--guidance_scale 3 --top_k 20 --temperature 0.8 --max_steps 500]

Writes ``codes.{ark,scp}``, ``utt2num_frames``, ``cand2prompt``, ``wav/*.wav`` + ``wav.scp`` (with
``--codec_dir``) and ``sample_info.json`` (see :mod:`ualm_tk.dpo.sampling`). ``--num_prompts``
takes the first N prompt keys (byte order) before sharding; ``--nj``/``--job`` pick contiguous
shards, and every prompt is seeded by its key, so the union of the shards does not depend on nj.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from ualm_tk.bin.sampling_options import add_sampling_options

logger = logging.getLogger("ualm_tk.bin.dpo_sample")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="model dir of ualm_tk.tasks.ualm (config.yaml, *.pth, token_list/)")
    p.add_argument("--data_json", required=True, help="caption_to_audio data.json whose captions are the prompts")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--codec_dir", default=None, help="codec component dir: also write the candidates as wavs (needed by the reward)")
    p.add_argument("--num_samples", type=int, default=4, help="candidates per prompt (n)")
    p.add_argument("--num_prompts", type=int, default=None, help="use only the first N prompts (byte order)")
    p.add_argument("--nj", type=int, default=1, help="number of shards")
    p.add_argument("--job", type=int, default=1, help="this shard (1-based)")
    add_sampling_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    for name in ("num_samples", "nj", "num_threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 1 <= args.job <= args.nj:
        raise SystemExit(f"--job must be in 1..{args.nj}, got {args.job}")
    if args.num_prompts is not None and args.num_prompts < 1:
        raise SystemExit(f"--num_prompts must be >= 1, got {args.num_prompts}")
    import torch

    from ualm_tk.data.task_data import TaskData
    from ualm_tk.data.task_templates import TaskDataError
    from ualm_tk.dpo.sampling import sample_candidates, shard_keys
    from ualm_tk.models.generation import load_model_dir

    torch.set_num_threads(args.num_threads)
    try:
        data = TaskData.load(args.data_json)
    except TaskDataError as e:
        raise SystemExit(f"--data_json: {e}")
    keys = data.keys()[: args.num_prompts] if args.num_prompts else data.keys()
    keys = shard_keys(keys, args.nj, args.job)
    model, _, _ = load_model_dir(args.model_dir, args.device)
    codec = None
    if args.codec_dir:
        from ualm_tk.codec import load_codec

        codec = load_codec(args.codec_dir, args.device)
    logger.info("shard %d/%d: %d prompts x %d samples", args.job, args.nj, len(keys), args.num_samples)
    try:
        sample_candidates(
            model, data, keys, args.output_dir, codec=codec, num_samples=args.num_samples,
            guidance_scale=args.guidance_scale if args.guidance_scale > 0 else None, top_k=args.top_k,
            temperature=args.temperature, max_steps=args.max_steps, seed=args.seed,
            cfg_plausibility=args.cfg_plausibility,
        )
    except (TaskDataError, ValueError) as e:
        raise SystemExit(f"dpo_sample: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
