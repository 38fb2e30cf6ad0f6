"""One-shot UALM generation.

Text prompt -> audio (caption_to_audio, CFG)::

    python -m ualm_tk.bin.generate --model_dir exp/ualm_tiny --text "a dog barks, then a bell rings" \\
        --codec_dir exp/codec_mini/codec --output_dir out/

writes ``out/codes.npy`` (``[K,T]`` local codes per sample: ``codes.npy``, ``codes_1.npy``, ...)
and, with ``--codec_dir``, ``out/gen.wav`` (``gen_1.wav``, ...).

Audio + question -> text (audio_qa)::

    python -m ualm_tk.bin.generate --model_dir exp/ualm_tiny --audio clip.wav --text "What instrument is playing?" \\
        --output_dir out/

prints the answer and writes ``out/text``; when the model writes segments before its answer
(``<eot>``, e.g. a worked solution for ``--task text_only``), they are printed first
(``thinking: ...``) and written to ``out/thinking``. ``--task`` overrides the task chosen from
the inputs (``text_only`` with --text, ``audio_to_caption`` with --audio).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from ualm_tk.bin.sampling_options import add_sampling_options

logger = logging.getLogger("ualm_tk.bin.generate")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="experiment dir of ualm_tk.tasks.ualm (config.yaml, *.pth, token_list/)")
    p.add_argument("--text", default=None, help="caption (audio out) or question (with --audio, or --task text_only)")
    p.add_argument("--audio", default=None, help="input wav (mono, at the audio encoder's rate)")
    p.add_argument("--task", default=None, choices=["caption_to_audio", "audio_to_caption", "audio_qa", "text_only"])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--codec_dir", default=None, help="codec component dir to decode generated codes to a wav")
    add_sampling_options(p)
    p.add_argument("--num_samples", type=int, default=1, help="n-best for audio")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task_marker", action="store_true", help="prompt starts with <system> <task_...> (as the data.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--log_level", default="INFO")
    return p


def pick_task(args: argparse.Namespace) -> str:
    if args.task:
        return args.task
    if args.audio and args.text:
        return "audio_qa"
    if args.audio:
        return "audio_to_caption"
    if args.text is not None:
        return "caption_to_audio"
    raise SystemExit("give --text (caption) and/or --audio")


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import soundfile as sf

    from ualm_tk.data.task_templates import TaskDataError, make_prompt_segments, prompt_fields_for_audio
    from ualm_tk.models.generation import generate_from_segments, load_model_dir

    task = pick_task(args)
    model, layout, tokenizer = load_model_dir(args.model_dir, args.device)
    fields = {}
    if task in ("audio_qa", "audio_to_caption"):
        if not args.audio:
            raise SystemExit(f"task {task} needs --audio")
        if model.audio_encoder is None:
            raise SystemExit(f"{args.model_dir}: the model has no audio encoder; it cannot take --audio")
        try:
            info = sf.info(args.audio)
        except Exception as e:
            raise SystemExit(f"--audio {args.audio}: cannot read: {e}")
        if info.samplerate != model.audio_encoder.sample_rate:
            raise SystemExit(
                f"--audio {args.audio}: {info.samplerate} Hz, the model's audio encoder takes "
                f"{model.audio_encoder.sample_rate} Hz (resample it first, e.g. sox in.wav -r 16000 out.wav)"
            )
        fields.update(prompt_fields_for_audio(args.audio, info.frames, info.samplerate, model.audio_encoder.frame_rate))
    if task == "audio_qa" or task == "text_only":
        fields["question"] = args.text
    elif task == "caption_to_audio":
        fields["text"] = args.text

    def encode(text: str, what: str):
        from ualm_tk.tokens.text_tokenizer import TextTokenizerError

        try:
            return layout.text_to_global(tokenizer.encode_field(text, "prompt", what))
        except TextTokenizerError as e:
            raise SystemExit(f"--text: {e}")

    try:
        segs = make_prompt_segments(task, fields, encode, task_marker=args.task_marker)
    except TaskDataError as e:
        raise SystemExit(f"bad prompt: {e}")
    cfg = args.guidance_scale if args.guidance_scale > 0 else None
    res = generate_from_segments(
        model, segs, guidance_scale=cfg, top_k=args.top_k, temperature=args.temperature,
        max_steps=args.max_steps, num_samples=args.num_samples if task == "caption_to_audio" else 1, seed=args.seed,
        cfg_plausibility=args.cfg_plausibility,
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if res[0].text_ids is not None:
        text = tokenizer.decode(res[0].text_ids)
        if res[0].thinking:
            thinking = " | ".join(tokenizer.decode(t) for t in res[0].thinking)
            (out / "thinking").write_text(thinking + "\n", encoding="utf-8")
            print(f"thinking: {thinking}")
        else:
            (out / "thinking").unlink(missing_ok=True)  # from an earlier run into the same directory
        (out / "text").write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0
    codec = None
    if args.codec_dir:
        from ualm_tk.codec import load_codec

        codec = load_codec(args.codec_dir, args.device)
        if codec.num_codebooks < layout.num_codebooks or codec.codebook_size != layout.codebook_size:
            raise SystemExit(
                f"--codec_dir {args.codec_dir}: K={codec.num_codebooks}, N={codec.codebook_size}; the model's "
                f"token list has K={layout.num_codebooks}, N={layout.codebook_size}"
            )
    else:
        logger.warning("no --codec_dir: writing codes only")
    for i, g in enumerate(res):
        suffix = "" if i == 0 else f"_{i}"
        np.save(out / f"codes{suffix}.npy", g.codes.numpy())
        logger.info("sample %d: %d frames%s", i, g.codes.shape[1], "" if g.finished else " (stopped at --max_steps)")
        if codec is not None:
            if g.codes.shape[1] == 0:
                logger.warning("sample %d: no frame generated; no wav written", i)
                continue
            wav = codec.decode(g.codes[None].to(args.device))[0, 0].cpu().numpy()  # [L]
            sf.write(out / f"gen{suffix}.wav", wav, codec.sample_rate)
            print(out / f"gen{suffix}.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
