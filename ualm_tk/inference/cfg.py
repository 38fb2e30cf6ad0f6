"""Classifier-free guidance: conditional and unconditional rows in ONE decoder batch.

Row layout: rows ``[0, R)`` are conditional, rows ``[R, 2R)`` unconditional (``R`` = prompts x
samples); both halves receive the same sampled tokens each step, so every unconditional row has
its own cache rows in the same cache. Logits combine as ``λ·cond + (1−λ)·uncond`` (paper λ = 3)
BEFORE masking and sampling; λ = 1 returns the conditional logits bit for bit. With λ ≠ 1, the
stop decision stays the conditional model's (:func:`keep_conditional_stop`,
``DecodeConfig.cfg_conditional_stop``), and :func:`plausibility_mask` can restrict the guided
logits to tokens the conditional model finds plausible (``DecodeConfig.cfg_plausibility``; off by
default: when the conditional model is peaked, e.g. on the codec's silence code, it leaves only
that token and guidance has nothing left to choose from).

The unconditional prompt is the conditional one with the condition replaced by ``<pad>`` — the
same substitution CFG dropout makes in training — so both prompts have equal length by
construction (:func:`unconditional_tokens`). Prompts of different lengths are also accepted:
:func:`cfg_prompt_batch` left-pads the shorter half and returns the attention mask.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


class GuidanceError(ValueError):
    """Invalid guidance scale or CFG prompts."""


def check_guidance_scale(scale: float) -> float:
    """λ must be finite and >= 0 (0 = unconditional only, 1 = no guidance, > 1 = guided)."""
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise GuidanceError(f"guidance scale λ must be a finite number >= 0, got {scale!r}")
    return float(scale)


def cfg_combine(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """``logits [2R, K, V]`` (cond rows first) -> ``λ·cond + (1−λ)·uncond`` ``[R, K, V]``."""
    if logits.shape[0] % 2:
        raise GuidanceError(f"CFG logits need an even number of rows (cond + uncond), got {logits.shape[0]}")
    cond, uncond = logits.chunk(2, dim=0)
    return torch.add(cond * scale, uncond, alpha=1.0 - scale)


def plausibility_mask(cond_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """``cond_logits [R, K, V]`` (vocabulary mask already added) -> keep ``[R, K, V]`` bool.

    Keeps the tokens whose CONDITIONAL probability is at least ``alpha`` times the most likely
    token's (the adaptive plausibility constraint of contrastive decoding, Li et al. 2023). CFG
    extrapolates ``cond + (λ−1)(cond − uncond)``: a token both models find very unlikely — e.g.
    ``<eos>`` at the first audio frame, which the unconditional model rules out even harder —
    can be pushed to the top. Guidance then only re-ranks tokens the conditional model finds
    plausible. ``alpha`` 0 keeps everything.
    """
    if not 0.0 <= alpha < 1.0:
        raise GuidanceError(f"plausibility alpha must be in [0, 1), got {alpha!r}")
    logp = torch.log_softmax(cond_logits.float(), dim=-1)
    if alpha == 0.0:
        return torch.ones_like(logp, dtype=torch.bool)
    return logp >= logp.max(dim=-1, keepdim=True).values + math.log(alpha)


def keep_conditional_stop(guided: torch.Tensor, cond: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Stream-0 logits ``guided [R, V]``, ``cond [R, V]`` (vocabulary mask added) -> ``[R, V]``
    log-probabilities in which the stop ids keep their CONDITIONAL probability and guidance only
    re-ranks the other tokens (their guided distribution, scaled to the remaining mass).

    Guidance extrapolates away from the unconditional model, whose stop probability differs from
    the conditional one at every frame: at λ = 3 it made ``<eos>`` the top token at the first frame
    of weak models (empty outputs), or never let a clip end. When to stop is then the conditional
    model's decision; what to play is guided. ``stop_ids [S]`` long.
    """
    lc = torch.log_softmax(cond.float(), dim=-1)  # [R, V]
    is_stop = torch.zeros(cond.shape[-1], dtype=torch.bool, device=cond.device)
    is_stop[stop_ids] = True
    p_stop = lc[:, is_stop].exp().sum(dim=-1, keepdim=True).clamp(max=1.0 - 1e-6)  # [R, 1]
    lg = torch.log_softmax(guided.float().masked_fill(is_stop, float("-inf")), dim=-1)  # [R, V]
    lg = torch.nan_to_num(lg, nan=float("-inf"))  # a row with no allowed non-stop token
    return torch.where(is_stop, lc, lg + torch.log1p(-p_stop))


def unconditional_tokens(
    prompt_tokens: torch.Tensor,  # [B, S, K]
    condition_mask: torch.Tensor,  # [B, S] bool, True where the condition sits
    pad_id: int,
) -> torch.Tensor:
    """Replace the condition positions (all streams) by ``pad_id``: ``[B, S, K]``, same length."""
    if prompt_tokens.dim() != 3 or tuple(condition_mask.shape) != tuple(prompt_tokens.shape[:2]):
        raise GuidanceError(
            f"prompt_tokens must be [B, S, K] and condition_mask [B, S]; got {tuple(prompt_tokens.shape)} "
            f"and {tuple(condition_mask.shape)}"
        )
    return prompt_tokens.masked_fill(condition_mask.bool()[:, :, None], pad_id)


def left_pad(embeds: torch.Tensor, mask: Optional[torch.Tensor], length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``embeds [B, S, D]`` -> ``[B, length, D]`` with zeros on the left; mask ``[B, length]`` bool."""
    B, S, D = embeds.shape
    if mask is None:
        mask = torch.ones(B, S, dtype=torch.bool, device=embeds.device)
    if S == length:
        return embeds, mask.bool()
    out = embeds.new_zeros(B, length, D)
    out[:, length - S:] = embeds
    out_mask = torch.zeros(B, length, dtype=torch.bool, device=embeds.device)
    out_mask[:, length - S:] = mask.bool()
    return out, out_mask


def cfg_prompt_batch(
    cond: torch.Tensor,  # [R, S_c, D]
    uncond: torch.Tensor,  # [R, S_u, D]
    cond_mask: Optional[torch.Tensor] = None,  # [R, S_c]
    uncond_mask: Optional[torch.Tensor] = None,  # [R, S_u]
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Stack cond over uncond rows -> ``(embeds [2R, S, D], mask [2R, S] or None)``, left-padded."""
    if cond.shape[0] != uncond.shape[0] or cond.shape[2] != uncond.shape[2]:
        raise GuidanceError(
            f"conditional prompt {tuple(cond.shape)} and unconditional prompt {tuple(uncond.shape)} "
            "must have the same batch and width"
        )
    if cond_mask is None and uncond_mask is None and cond.shape[1] == uncond.shape[1]:
        return torch.cat([cond, uncond], dim=0), None
    length = max(cond.shape[1], uncond.shape[1])
    c, cm = left_pad(cond, cond_mask, length)
    u, um = left_pad(uncond, uncond_mask, length)
    return torch.cat([c, u], dim=0), torch.cat([cm, um], dim=0)
