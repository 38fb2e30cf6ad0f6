"""Generation with a trained UALM model on top of :func:`ualm_tk.inference.generate`.

* :func:`load_model_dir`: an experiment directory of :mod:`ualm_tk.tasks.ualm` (``config.yaml``,
  a ``*.pth`` and ``token_list/``) -> model (eval), layout, text tokenizer. The weights are the first
  of :data:`MODEL_FILES` the directory holds: the averaged checkpoint before the single best.
* :func:`generate_from_segments`: render the prompt (``render_example(..., prompt_only=True)``),
  write user audio features, then decode incrementally. The modality of the first segment of the
  final assistant turn decides the output: ``audio`` -> codec codes (all K streams, delay pattern,
  top-k/temperature, CFG with the unconditional prompt of :func:`make_unconditional`), reverted to
  ``codes [K,T]``; ``text`` -> greedy text in stream 0 (streams >= 1 pad), where a segment closed
  by ``<eot>`` is followed by another ``<assistant> <text>`` segment (reasoning, then the answer).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import yaml

from ualm_tk.data.lm_dataset import load_wav
from ualm_tk.data.task_templates import (
    Segment, TaskDataError, assistant_turn_start, make_unconditional, render_example,
)
from ualm_tk.inference import DecodeConfig, SamplingConfig, generate, stream_vocab_mask
from ualm_tk.models.ualm import UALMModel
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout
from ualm_tk.tokens.text_tokenizer import AbsTextTokenizer, load_text_tokenizer

logger = logging.getLogger(__name__)

# the first of these that a model dir holds is loaded: ESPnet's average of the keep_nbest_models best epochs
# before the single best (mini recipe, session 9, average of 2: held-out categorical audio questions 69.3 ->
# 72.0 %, text problems 96.5 -> 97.5 %)
MODEL_FILES = ("valid.loss.ave.pth", "valid.acc.ave.pth", "valid.loss.best.pth", "valid.acc.best.pth", "latest.pth")


@dataclass
class Generation:
    """One output row: ``codes [K,T]`` local codes (audio) or ``text_ids`` (text-block-local ids of
    the last text segment: the answer). ``thinking``: the text-local ids of every earlier segment
    of a multi-segment text turn (each closed by ``<eot>``), empty when the turn had one segment."""

    codes: Optional[torch.Tensor]
    text_ids: Optional[List[int]]
    finished: bool
    thinking: List[List[int]] = field(default_factory=list)


def load_model_dir(model_dir: Union[str, Path], device: str = "cpu") -> Tuple[UALMModel, TokenLayout, AbsTextTokenizer]:
    """Restore a trained model from its experiment directory (see module doc)."""
    from ualm_tk.tasks.ualm import TOKEN_DIR_NAME, UALMTask

    d = Path(model_dir)
    cfg_path, token_dir = d / "config.yaml", d / TOKEN_DIR_NAME
    for p in (cfg_path, token_dir):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing; {d} is not a UALM model directory (ualm_tk.tasks.ualm output)")
    with open(cfg_path, encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    args.token_dir, args.output_dir = str(token_dir), None
    model = UALMTask.build_model(args)
    path = next((d / n for n in MODEL_FILES if (d / n).is_file()), None)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
    elif (d / "checkpoint.pth").is_file():
        path = d / "checkpoint.pth"
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    else:
        raise FileNotFoundError(f"{d}: no model weights ({', '.join(MODEL_FILES)} or checkpoint.pth)")
    model.load_state_dict(state)
    logger.info("loaded %s", path)
    return model.to(device).eval(), model.layout, load_text_tokenizer(token_dir)


def _prompt_embeds(model: UALMModel, tokens: torch.Tensor, feats, sample_rate: int) -> torch.Tensor:
    """``tokens [1,S,K]`` (+ user audio spans) -> ``embeds [1,S,D]``."""
    if not feats:
        return model.embed_tokens(tokens)
    clips = [torch.from_numpy(load_wav(f.wav, sample_rate, "prompt", f.num_samples)) for f in feats]
    L = max(len(c) for c in clips)
    audio = torch.zeros(len(clips), 1, L, device=tokens.device)
    for i, c in enumerate(clips):
        audio[i, 0, : len(c)] = c
    lengths = torch.tensor([len(c) for c in clips], device=tokens.device)
    return model.input_embeds(tokens, audio, lengths, torch.zeros(len(clips), dtype=torch.long))


def audio_vocab_mask(lay: TokenLayout, device=None) -> torch.Tensor:
    """The sampler's allowed ids for an audio turn, ``[K, V]`` bool: stream k its own codebook block, stream 0
    also ``<eos>`` (guided DPO scores its log-probs under the same mask, :mod:`ualm_tk.dpo.logprob`)."""
    K = lay.num_codebooks
    return stream_vocab_mask(
        lay.vocab_size, [lay.stream_vocab_range(k) for k in range(K)], [[sp.EOS]] + [[]] * (K - 1), device=device
    )


def _text_config(lay: TokenLayout, max_steps: int, device) -> DecodeConfig:
    """Greedy text in stream 0 (stops at ``<eos>`` or ``<eot>``), ``<pad>`` in streams >= 1."""
    K, V = lay.num_codebooks, lay.vocab_size
    allowed = stream_vocab_mask(
        V, [lay.text_vocab_range()] + [(0, 0)] * (K - 1), [[sp.EOS, sp.EOT]] + [[sp.PAD]] * (K - 1), device=device
    )
    return DecodeConfig(allowed=allowed, pad_id=sp.PAD, stop_ids=[sp.EOS, sp.EOT], delays=[0] * K,
                        max_steps=max_steps, sampling=SamplingConfig(greedy=True))


def _continuation_embeds(model: UALMModel, content: List[int]) -> torch.Tensor:
    """Embeds ``[1,n+3,D]`` of a generated text segment's global ids ``content`` (n), its ``<eot>``
    and the header ``<assistant> <text>`` of the segment that continues the turn."""
    K = model.layout.num_codebooks
    device = next(model.parameters()).device
    ids = list(content) + [sp.EOT, sp.ROLE_IDS["assistant"], sp.TEXT]
    tokens = torch.full((1, len(ids), K), sp.PAD, dtype=torch.long, device=device)  # [1,n+3,K]
    tokens[0, :, 0] = torch.tensor(ids, dtype=torch.long, device=device)
    return model.embed_tokens(tokens)


def _generate_text_turn(model: UALMModel, embeds: torch.Tensor, max_steps: int, max_segments: int) -> Generation:
    """Greedy text segments from ``embeds [1,S,D]`` (a prompt ending in ``<assistant> <text>``).

    A segment closed by ``<eot>`` continues the turn: its content, ``<eot>`` and a new
    ``<assistant> <text>`` header extend the prompt and the next segment is decoded (``max_steps``
    each, fewer where the decoder's position limit leaves less room). Stops at ``<eos>``, at a
    segment cut by ``max_steps`` or the position limit, or after ``max_segments`` segments (the
    last two leave ``finished`` False). ``text_ids`` = the last segment, ``thinking`` = the others.
    """
    lay, device = model.layout, embeds.device
    limit = model.decoder.max_positions
    thinking: List[List[int]] = []
    steps = max_steps
    for n_seg in range(1, max_segments + 1):
        out = generate(model.decoder, embeds, model.embed_fn, model.logits_fn, _text_config(lay, steps, device))
        e, fin = int(out.end_steps[0]), bool(out.finished[0])
        content = out.tokens[0, :e, 0].tolist()  # global text ids
        text_ids = lay.global_to_text(content)
        if not fin or int(out.tokens[0, e, 0]) != sp.EOT:
            return Generation(None, text_ids, fin, thinking)
        room = None if limit is None else limit - (embeds.shape[1] + e + 3)
        if n_seg == max_segments or (room is not None and room < 1):
            logger.warning("the assistant turn was cut after %d text segments (%s)", n_seg,
                           f"max_segments={max_segments}" if n_seg == max_segments else "decoder position limit")
            return Generation(None, text_ids, False, thinking)
        thinking.append(text_ids)
        embeds = torch.cat([embeds, _continuation_embeds(model, content)], dim=1)  # [1,S+e+3,D]
        steps = max_steps if room is None else min(max_steps, room)
    raise ValueError(f"max_segments must be >= 1, got {max_segments}")


@torch.no_grad()
def generate_from_segments(
    model: UALMModel,
    segments: Sequence[Segment],
    guidance_scale: Optional[float] = 3.0,
    top_k: int = 20,
    temperature: float = 0.8,
    max_steps: int = 500,
    num_samples: int = 1,
    seed: int = 0,
    cfg_plausibility: float = 0.0,
    max_segments: int = 8,
) -> List[Generation]:
    """Decode the assistant turn that ``segments`` (a prompt, see make_prompt_segments) opens.

    The prompt ends at the header of the first segment of the final assistant turn
    (:func:`assistant_turn_start`); that segment's modality is the output's. Text turns are greedy
    and may hold up to ``max_segments`` segments (``<eot>`` continues, see
    :func:`_generate_text_turn`; ``num_samples`` identical rows); audio turns stop at ``<eos>``.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    lay, pattern = model.layout, model.pattern
    K = lay.num_codebooks
    device = next(model.parameters()).device
    rendered = render_example(segments, lay, pattern, prompt_only=True, key="prompt")
    out_modality = segments[assistant_turn_start(segments, "prompt")].modality
    sr = model.audio_encoder.sample_rate if model.audio_encoder is not None else 16000
    tokens = torch.from_numpy(rendered.tokens)[None].to(device)  # [1,S,K]
    embeds = _prompt_embeds(model, tokens, rendered.audio_feats, sr)
    if out_modality == "text":
        g = _generate_text_turn(model, embeds, max_steps, max_segments)
        return [g] + [Generation(None, list(g.text_ids), g.finished, [list(t) for t in g.thinking])
                      for _ in range(num_samples - 1)]
    if out_modality != "audio":
        raise TaskDataError(f"cannot generate modality {out_modality!r} (audio or text)")
    allowed = audio_vocab_mask(lay, device)
    delays = pattern.offsets(K)
    uncond = None
    if guidance_scale is not None:
        if not rendered.has_condition:
            raise TaskDataError("CFG needs a prompt with a condition segment (caption_to_audio)")
        u = make_unconditional(rendered)
        uncond = _prompt_embeds(model, torch.from_numpy(u.tokens)[None].to(device), u.audio_feats, sr)
    config = DecodeConfig(
        allowed=allowed, pad_id=sp.PAD, stop_ids=[sp.EOS], delays=delays, max_steps=max_steps,
        sampling=SamplingConfig(greedy=False, top_k=top_k, temperature=temperature), guidance_scale=guidance_scale,
        num_samples=num_samples, cfg_plausibility=cfg_plausibility,
    )
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(model.decoder, embeds, model.embed_fn, model.logits_fn, config,
                   uncond_prompt_embeds=uncond, generator=gen)
    results = []
    max_delay = max(delays)
    for r in range(out.tokens.shape[0]):
        e = int(out.end_steps[r])
        fin = bool(out.finished[r])
        if e == 0:
            results.append(Generation(torch.zeros(K, 0, dtype=torch.long), None, fin))
            continue
        seq = out.tokens[r, : e + max_delay].clone()  # [e+D,K]
        if max_delay > 0:
            seq[e, 0] = sp.PAD  # the <eos> slot is a pattern pad of stream 0
        glob = pattern.revert(seq[None])[0]  # [K,T=e] global ids
        results.append(Generation(lay.global_to_audio(glob, dim=0).cpu(), None, fin))
    return results
