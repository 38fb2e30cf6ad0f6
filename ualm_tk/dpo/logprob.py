"""Summed log-probability of each row's trained tokens under a UALM model.

Uses the model's own scoring path (``input_embeds`` -> decoder -> ``_stream_ce``, the restricted
softmax per stream), so a row's log-prob is exactly ``−Σ loss_mask · CE``: the assistant tokens
only, audio streams weighted as in the LM loss (``1/K`` each by default) and the segment's closing
``<eos>`` with weight 1 (the length decision belongs to the response). Prompt positions (mask 0)
and padding never count.

:func:`guided_logprobs` scores the same tokens under classifier-free guidance at scale λ, as the
sampler draws them (:mod:`ualm_tk.inference.cfg`): per position the conditional and unconditional
logits combine as ``λ·cond + (1−λ)·uncond``; stream 0 may emit its codebook block and ``<eos>``
only (the sampler's vocabulary mask for audio) and ``<eos>`` keeps its conditional probability
(:func:`~ualm_tk.inference.cfg.keep_conditional_stop`); streams >= 1 their own block. Temperature
and top-k are left out (top-k has no gradient). DPO on these log-probs optimises the distribution
the recipe samples at λ instead of the conditional model alone.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ualm_tk.inference.cfg import keep_conditional_stop
from ualm_tk.inference.sampling import vocab_bias
from ualm_tk.models.abs_model import ModelInputError
from ualm_tk.models.generation import audio_vocab_mask
from ualm_tk.models.ualm import UALMModel
from ualm_tk.tokens import specials as sp


class SequenceScores(NamedTuple):
    logp: torch.Tensor  # [B] Σ mask·log p
    ce_sum: torch.Tensor  # [B] Σ mask·CE  (= −logp)
    weight: torch.Tensor  # [B] Σ mask
    correct: torch.Tensor  # [B,S-1,K] bool (argmax hits, for accuracies)
    mask: torch.Tensor  # [B,S-1,K]


def sequence_hidden(
    model: UALMModel,
    tokens: torch.Tensor,  # [B,S,K] long
    lengths: Optional[torch.Tensor] = None,  # [B]
    audio: Optional[torch.Tensor] = None,  # [N,1,L]
    audio_lengths: Optional[torch.Tensor] = None,  # [N]
    audio_rows: Optional[torch.Tensor] = None,  # [N]
) -> torch.Tensor:
    """Decoder outputs ``[B,S-1,D]``: position ``s`` predicts ``tokens[:, s + 1]``."""
    if tokens.dim() != 3:
        raise ModelInputError(f"tokens must be [B,S,K], got {tuple(tokens.shape)}")
    B, S, _ = tokens.shape
    if S < 2:
        raise ModelInputError(f"sequences need at least 2 positions, got S={S}")
    attn = None
    if lengths is not None:
        attn = torch.arange(S, device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]  # [B,S]
    x = model.input_embeds(tokens, audio, audio_lengths, audio_rows)  # [B,S,D]
    hidden, _ = model.decoder(x[:, :-1], attention_mask=None if attn is None else attn[:, :-1])  # [B,S-1,D]
    return hidden


def scores_from_hidden(
    model: UALMModel,
    hidden: torch.Tensor,  # [B,S-1,D] from sequence_hidden
    tokens: torch.Tensor,  # [B,S,K] long
    loss_mask: torch.Tensor,  # [B,S,K] float
) -> SequenceScores:
    """Per-row summed log-prob of the masked tokens from the decoder outputs (module doc)."""
    if tokens.shape != loss_mask.shape or tokens.dim() != 3:
        raise ModelInputError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} must be equal [B,S,K]")
    mask = loss_mask[:, 1:].to(hidden.dtype)  # [B,S-1,K]
    ce, correct = model._stream_ce(hidden, tokens[:, 1:], mask)  # [B,S-1,K]
    ce_sum = (ce * mask).sum(dim=(1, 2))  # [B]
    weight = mask.sum(dim=(1, 2))  # [B]
    empty = (weight <= 0).nonzero()
    if empty.numel():
        raise ModelInputError(f"row {int(empty[0])} has no position with loss (no assistant tokens)")
    return SequenceScores(-ce_sum, ce_sum, weight, correct, mask)


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
    hidden = sequence_hidden(model, tokens, lengths, audio, audio_lengths, audio_rows)
    return scores_from_hidden(model, hidden, tokens, loss_mask)


def guided_logprobs(
    model: UALMModel,
    hidden_cond: torch.Tensor,  # [B,Sc-1,D] from sequence_hidden
    hidden_uncond: torch.Tensor,  # [B,Su-1,D]
    tokens_cond: torch.Tensor,  # [B,Sc,K] long
    tokens_uncond: torch.Tensor,  # [B,Su,K] long: the same responses after the unconditional prompts
    mask_cond: torch.Tensor,  # [B,Sc,K] float loss masks
    mask_uncond: torch.Tensor,  # [B,Su,K]
    scale: float,
) -> torch.Tensor:
    """``Σ mask·log p_λ(token)`` per row ``[B]``: the response's log-prob as the CFG sampler draws it (module doc).

    Row ``b`` of the unconditional inputs is row ``b``'s prompt with the condition blanked
    (:func:`~ualm_tk.data.task_templates.make_unconditional`): its scored positions carry the same
    tokens and weights, in the same order, as the conditional row's.
    """
    mc, mu = mask_cond[:, 1:].float(), mask_uncond[:, 1:].float()  # [B,S-1,K]
    sel_c, sel_u = mc.gt(0).any(-1), mu.gt(0).any(-1)  # [B,S-1] scored positions
    n_c, n_u = sel_c.sum(1), sel_u.sum(1)  # [B]
    if not torch.equal(n_c, n_u):
        b = int((n_c != n_u).nonzero()[0])
        raise ModelInputError(f"row {b}: the conditional row scores {int(n_c[b])} positions, the unconditional {int(n_u[b])}")
    if not bool(n_c.gt(0).all()):
        raise ModelInputError(f"row {int(n_c.eq(0).nonzero()[0])} has no position with loss (no assistant tokens)")
    target = tokens_cond[:, 1:][sel_c]  # [P,K], rows in order, positions ascending
    m = mc[sel_c]  # [P,K]
    if not (torch.equal(target, tokens_uncond[:, 1:][sel_u]) and torch.equal(m, mu[sel_u])):
        raise ModelInputError("the unconditional rows' scored tokens or weights differ from the conditional rows'")
    l0c, lac = model.stream_logits(hidden_cond[sel_c][:, None])  # [P,1,s0_end], [P,1,K-1,N]
    l0u, lau = model.stream_logits(hidden_uncond[sel_u][:, None])
    lam = float(scale)
    # stream 0: the sampler's audio mask (its codebook block and <eos>), <eos> at its conditional probability
    bias0 = vocab_bias(audio_vocab_mask(model.layout, l0c.device))[0, : l0c.shape[-1]]  # [s0_end]
    c0 = l0c[:, 0].float() + bias0  # [P,s0_end]
    if lam == 1.0:
        logp0 = torch.log_softmax(c0, dim=-1)
    else:
        g0 = torch.add(l0c[:, 0].float() * lam, l0u[:, 0].float(), alpha=1.0 - lam) + bias0
        logp0 = keep_conditional_stop(g0, c0, torch.tensor([sp.EOS], device=c0.device))  # log-probs [P,s0_end]
    on0 = m[:, 0] > 0
    t0 = torch.where(on0, target[:, 0], torch.full_like(target[:, 0], sp.EOS))
    lp0 = logp0.gather(-1, t0[:, None])[:, 0]  # [P]
    if not bool(torch.isfinite(lp0[on0]).all()):
        p = int((~torch.isfinite(lp0) & on0).nonzero()[0])
        raise ModelInputError(f"scored position {p}: stream-0 target id {int(target[p, 0])} is neither audio stream 0 nor <eos>")
    terms = torch.where(on0, lp0, torch.zeros_like(lp0)) * m[:, 0]  # [P]
    if lac is not None:
        ga = torch.add(lac[:, 0].float() * lam, lau[:, 0].float(), alpha=1.0 - lam)  # [P,K-1,N]
        onA = m[:, 1:] > 0  # [P,K-1]
        local = model._local_codes(target[:, 1:], onA, sel_c, tokens_cond[:, 1:])  # [P,K-1]
        lpa = torch.log_softmax(ga, dim=-1).gather(-1, local[..., None])[..., 0]  # [P,K-1]
        terms = terms + (torch.where(onA, lpa, torch.zeros_like(lpa)) * m[:, 1:]).sum(-1)
    rows = sel_c.nonzero()[:, 0]  # [P] row of each scored position
    return terms.new_zeros(tokens_cond.shape[0]).index_add(0, rows, terms)  # [B]
