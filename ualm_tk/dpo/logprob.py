"""Summed log-probability of each row's trained tokens under a UALM model.

Uses the model's own scoring path (``input_embeds`` -> decoder -> ``_stream_ce``, the restricted
softmax per stream), so a row's log-prob is exactly ``−Σ loss_mask · CE``: the assistant tokens
only, audio streams weighted as in the LM loss (``1/K`` each by default) and the segment's closing
``<eos>`` with weight 1 (the length decision belongs to the response). Prompt positions (mask 0)
and padding never count.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ualm_tk.models.abs_model import ModelInputError
from ualm_tk.models.ualm import UALMModel


class SequenceScores(NamedTuple):
    logp: torch.Tensor  # [B] Σ mask·log p
    ce_sum: torch.Tensor  # [B] Σ mask·CE  (= −logp)
    weight: torch.Tensor  # [B] Σ mask
    correct: torch.Tensor  # [B,S-1,K] bool (argmax hits, for accuracies)
    mask: torch.Tensor  # [B,S-1,K]


def sequence_logprobs(
    model: UALMModel,
    tokens: torch.Tensor,  # [B,S,K] long
    loss_mask: torch.Tensor,  # [B,S,K] float
    lengths: Optional[torch.Tensor] = None,  # [B]
    audio: Optional[torch.Tensor] = None,  # [N,1,L]
    audio_lengths: Optional[torch.Tensor] = None,  # [N]
    audio_rows: Optional[torch.Tensor] = None,  # [N]
) -> SequenceScores:
    """Per-row summed log-prob of the masked (assistant) tokens; see the module doc."""
    if tokens.shape != loss_mask.shape or tokens.dim() != 3:
        raise ModelInputError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} must be equal [B,S,K]")
    B, S, _ = tokens.shape
    if S < 2:
        raise ModelInputError(f"sequences need at least 2 positions, got S={S}")
    attn = None
    if lengths is not None:
        attn = torch.arange(S, device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]  # [B,S]
    x = model.input_embeds(tokens, audio, audio_lengths, audio_rows)  # [B,S,D]
    hidden, _ = model.decoder(x[:, :-1], attention_mask=None if attn is None else attn[:, :-1])  # [B,S-1,D]
    mask = loss_mask[:, 1:].to(hidden.dtype)  # [B,S-1,K]
    ce, correct = model._stream_ce(hidden, tokens[:, 1:], mask)  # [B,S-1,K]
    ce_sum = (ce * mask).sum(dim=(1, 2))  # [B]
    weight = mask.sum(dim=(1, 2))  # [B]
    empty = (weight <= 0).nonzero()
    if empty.numel():
        raise ModelInputError(f"row {int(empty[0])} has no position with loss (no assistant tokens)")
    return SequenceScores(-ce_sum, ce_sum, weight, correct, mask)
