"""Stage 7: decode the examples of a data.json with a trained UALM, one shard of a JOB array.

    python -m ualm_tk.bin.lm_decode --model_dir exp/ualm_tiny --data_json dump/audio_qa/test/data.json \\
        --output_dir exp/ualm_tiny/decode_x/audio_qa/test/output.1 --nj 4 --job 1

Each PROMPT is the stored example up to the header of its final assistant turn (the answer/audio
the model must produce, with any solution segment before it); decoding is
``ualm_tk.models.generation.generate_from_segments``, the code of ``ualm_tk.bin.generate`` (KV
cache; audio: top-k/temperature with CFG; text: greedy).

Outputs in ``--output_dir`` (``DIR/output.JOB``): text tasks -> ``text`` (``key answer``) and, when
the model wrote segments before its answer (``<eot>``, e.g. a worked solution), ``thinking``
(``key segment | segment ...``, empty for keys without); audio
tasks -> ``codes.ark``/``codes.scp`` (int16 ``[T,K]`` like dump/codes) and, with ``--codec_dir``,
``wav/<key>.wav`` + ``wav.scp`` (with ``--vae_dir`` also ``wav_vae/<key>.wav`` + ``wav_vae.scp``).
With ``--num_samples n`` (audio) the i-th extra sample is ``<key>_sample<i>``. A rerun resumes:
finished keys are skipped (see :mod:`ualm_tk.inference.batch_decode`). Merge the shards with
``python -m ualm_tk.bin.lm_decode_merge``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from ualm_tk.bin.sampling_options import add_sampling_options

logger = logging.getLogger("ualm_tk.bin.lm_decode")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="experiment dir of ualm_tk.tasks.ualm (config.yaml, *.pth, token_list/)")
    p.add_argument("--data_json", required=True, help="dump/<task>/<set>/data.json")
    p.add_argument("--output_dir", required=True, help="this shard's directory, e.g. DIR/output.JOB")
    p.add_argument("--nj", type=int, default=1, help="number of shards")
    p.add_argument("--job", type=int, default=1, help="which shard (1..nj)")
    p.add_argument("--codec_dir", default=None, help="codec component dir: decode generated codes to wav/")
    p.add_argument("--vae_dir", default=None, help="enhancement VAE component dir: also write wav_vae/ (needs --codec_dir)")
    add_sampling_options(p)
    p.add_argument("--num_samples", type=int, default=1, help="samples per example (audio outputs)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each key's seed derives from it and the key")
    p.add_argument("--max_examples", type=int, default=None, help="decode only the first M keys (byte order)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--log_level", default="INFO")
    return p


def _shard_output_dir(path: str, job: int) -> Path:
    """``DIR/output.JOB`` must name this job (a shard written into another job's dir is refused)."""
    p = Path(path)
    m = re.fullmatch(r"output\.(\d+)", p.name)
    if m and int(m.group(1)) != job:
        raise SystemExit(f"--output_dir {path} names shard {m.group(1)} but --job is {job}")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.nj < 1 or not 1 <= args.job <= args.nj:
        raise SystemExit(f"--job must be in 1..--nj, got --job {args.job} --nj {args.nj}")
    if args.max_examples is not None and args.max_examples < 1:
        raise SystemExit(f"--max_examples must be >= 1, got {args.max_examples}")
    if args.num_samples < 1 or args.max_steps < 1:
        raise SystemExit("--num_samples and --max_steps must be >= 1")
    if args.vae_dir and not args.codec_dir:
        raise SystemExit("--vae_dir needs --codec_dir (the VAE enhances the codec's waveform)")
    out = _shard_output_dir(args.output_dir, args.job)

    import torch

    from ualm_tk.data.kaldi_files import byte_order_key
    from ualm_tk.data.task_data import TaskData
    from ualm_tk.data.task_templates import TaskDataError, assistant_turn_start
    from ualm_tk.inference.batch_decode import DecodeShardError, ShardState, key_seed, sample_key, shard_keys
    from ualm_tk.models.generation import generate_from_segments, load_model_dir
    from ualm_tk.tokens.layout import TokenLayoutMismatch

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        data = TaskData.load(args.data_json)
    except TaskDataError as e:
        raise SystemExit(f"--data_json: {e}")
    if data.num_examples == 0:
        raise SystemExit(f"{args.data_json}: no examples")
    keys = sorted(data.keys(), key=byte_order_key)
    if args.max_examples is not None:
        keys = keys[: args.max_examples]
    mine = shard_keys(keys, args.nj, args.job)
    first = data.segments(keys[0])
    try:  # the output modality is that of the assistant turn's first segment (e.g. a solution before a text answer)
        modality = first[assistant_turn_start(first, keys[0])].modality
    except TaskDataError as e:
        raise SystemExit(f"{args.data_json}: {e}")
    if modality not in ("text", "audio"):
        raise SystemExit(f"{args.data_json}: task {data.task} ends with a {modality} segment; only text or audio can be decoded")
    settings = dict(
        data_json=str(Path(args.data_json).resolve()), task=data.task, nj=args.nj, job=args.job,
        model_dir=str(Path(args.model_dir).resolve()), max_steps=args.max_steps, seed=args.seed,
        max_examples=args.max_examples,
    )
    if modality == "audio":
        settings.update(
            guidance_scale=args.guidance_scale, cfg_plausibility=args.cfg_plausibility, top_k=args.top_k,
            temperature=args.temperature, num_samples=args.num_samples, codec_dir=args.codec_dir and str(Path(args.codec_dir).resolve()),
            vae_dir=args.vae_dir and str(Path(args.vae_dir).resolve()),
        )
    try:
        state = ShardState(out, mine, settings, modality)
    except DecodeShardError as e:
        raise SystemExit(str(e))
    todo = state.pending()
    if not todo and (out / "info.json").is_file():
        logger.info("%s: shard %d/%d already complete (%d keys); nothing to do", out, args.job, args.nj, len(mine))
        return 0
    logger.info("%s: task %s, shard %d/%d: %d of %d keys (%d already done), output %s",
                args.data_json, data.task, args.job, args.nj, len(mine), len(keys), len(mine) - len(todo), modality)

    model, layout, tokenizer = load_model_dir(args.model_dir, args.device)
    try:
        data.check_layout(layout)
    except TokenLayoutMismatch as e:
        raise SystemExit(str(e))
    codec = vae = None
    if modality == "audio" and args.codec_dir:
        from ualm_tk.codec import load_codec

        codec = load_codec(args.codec_dir, args.device)
        if codec.num_codebooks < layout.num_codebooks or codec.codebook_size != layout.codebook_size:
            raise SystemExit(
                f"--codec_dir {args.codec_dir}: K={codec.num_codebooks}, N={codec.codebook_size}; the model's "
                f"token list has K={layout.num_codebooks}, N={layout.codebook_size}"
            )
        if args.vae_dir:
            from ualm_tk.vae import load_vae

            vae = load_vae(args.vae_dir).to(args.device)
            if vae.input_sample_rate != codec.sample_rate:
                raise SystemExit(f"--vae_dir {args.vae_dir} takes {vae.input_sample_rate} Hz, the codec gives {codec.sample_rate} Hz")
    elif modality == "audio":
        logger.warning("no --codec_dir: writing codes only")

    from ualm_tk.audio.io import save_audio

    cfg = args.guidance_scale if args.guidance_scale > 0 else None
    t0, unfinished, frames = time.perf_counter(), 0, 0
    for i, key in enumerate(todo):
        try:
            segs = data.segments(key)
            turn = segs[assistant_turn_start(segs, key)]
            if turn.modality != modality:
                raise TaskDataError(f"{args.data_json}: key '{key}': the assistant turn starts with {turn.modality}, "
                                    f"expected {modality} like the other examples")
            res = generate_from_segments(
                model, segs, guidance_scale=cfg, top_k=args.top_k, temperature=args.temperature,
                max_steps=args.max_steps, num_samples=args.num_samples if modality == "audio" else 1,
                seed=key_seed(args.seed, key), cfg_plausibility=args.cfg_plausibility,
            )
        except TaskDataError as e:
            raise SystemExit(f"{args.data_json}: key '{key}': {e}")
        unfinished += sum(not g.finished for g in res)
        if modality == "text":
            thinking = " | ".join(tokenizer.decode(t) for t in res[0].thinking) if res[0].thinking else None
            state.save_text(key, tokenizer.decode(res[0].text_ids), thinking=thinking)
        else:
            samples = []
            for s, g in enumerate(res):
                codes = g.codes  # [K,T] local
                frames += codes.shape[1]
                samples.append(codes.T.numpy().astype(np.int16))  # [T,K]
                if codec is None:
                    continue
                name = sample_key(key, s)
                with torch.no_grad():
                    if codes.shape[1] == 0:
                        logger.warning("key %s sample %d: no frame generated; writing one frame of silence", key, s)
                        wav = torch.zeros(1, 1, int(round(codec.sample_rate / codec.frame_rate)))
                    else:
                        wav = codec.decode(codes[None].to(args.device)).cpu()  # [1,1,L]
                    save_audio(out / "wav" / f"{name}.wav", wav[0].numpy(), codec.sample_rate)
                    if vae is not None:
                        hi = vae.enhance(wav.to(args.device), codec.sample_rate).cpu()  # [1,C,L']
                        save_audio(out / "wav_vae" / f"{name}.wav", hi[0].numpy(), vae.output_sample_rate)
            state.save_codes(key, samples)
        done = i + 1
        if done == len(todo) or done % 50 == 0:
            el = time.perf_counter() - t0
            logger.info("shard %d/%d: %d/%d keys decoded (%.2f s/key)", args.job, args.nj, done, len(todo), el / done)
    if unfinished:
        logger.warning("%d output(s) hit --max_steps %d before a stop token", unfinished, args.max_steps)
    wav_dirs = [n for n, on in (("wav", codec is not None), ("wav_vae", vae is not None)) if on]
    counts = state.finalize(dict(settings, modality=modality, hit_max_steps_this_run=unfinished), wav_dirs)
    logger.info("shard %d/%d complete: %s in %s (%.1f s)", args.job, args.nj, counts, out, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
