"""DPO wrapper: a trainable UALM policy and a frozen reference copy.

``forward(tokens, loss_mask, lengths, ...)`` takes the rows of :func:`ualm_tk.dpo.data.collate_pairs`
(B chosen rows, then the B rejected rows of the same pairs, then the unconditional rows of
:func:`ualm_tk.dpo.data.uncond_sides`) and returns
``loss = dpo_weight · DPO(β) + ce_weight · CE(chosen) [+ uncond_ce_weight · CE(unconditional chosen)]`` where

* DPO is :func:`ualm_tk.losses.dpo.dpo_loss` on the summed log-probs of the responses under the
  policy and, without gradient, the reference: :func:`ualm_tk.dpo.logprob.sequence_logprobs`
  (assistant tokens, streams weighted like the LM loss) of the conditional model, or with
  ``guidance_scale`` λ :func:`ualm_tk.dpo.logprob.guided_logprobs`, the log-probs of the
  distribution CFG samples at λ (``λ·cond + (1−λ)·uncond`` logits), from both sides' conditional
  and unconditional rows (``4B`` rows). The recipe samples at λ = 3; plain DPO tunes the
  conditional model that guidance then extrapolates from the unconditional one;
* CE(chosen) is the LM loss of the chosen rows (``Σ mask·CE / Σ mask``), the regulariser on winners;
* with ``uncond_ce_weight > 0`` the loss adds ``uncond_ce_weight · CE(unconditional chosen)``
  (the chosen rows' CFG unconditional forms, row block 3): DPO moves the weights the unconditional
  branch shares with the conditional one, and without this term nothing trains that branch, while
  CFG (λ = 3) adds ``(λ−1)·(cond − uncond)`` to every step's logits.

With ``length_normalize`` the DPO term compares per-token log-probs instead of sums: each response's log-prob
(policy and reference alike) is divided by its summed loss weight ``Σ mask`` (audio streams weighted as in the
LM loss, so about the response's frame count when the stream weights sum to 1) before the margin is taken, so a
pair whose responses differ in length is no longer ranked mostly by length (summed margins of the recipe's
300-600-frame candidates run to tens of nats). The per-token margins are smaller by that count: ``beta`` then
needs to be raised (SimPO, a length-normalised variant, uses β 2-2.5 where summed DPO uses 0.1).

``dpo_weight = 0`` is the CE fine-tune on winners that precedes DPO (the reference is then not
run; the DPO statistics are still logged from the policy alone, with the reference term zero).

The reference is NOT a registered submodule: it is absent from ``parameters()`` (the optimizer
never sees it) and from ``state_dict()``. ``state_dict()``/``load_state_dict()`` are the policy's
own, with the keys of a plain :class:`~ualm_tk.models.ualm.UALMModel`, so every checkpoint the
trainer writes loads into a UALMModel (and ``ualm_tk.bin.generate``) unchanged. ``.to()`` and
dtype casts move the reference along; ``train()`` leaves it in eval mode.
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, Optional

import torch
from typeguard import typechecked

from ualm_tk.dpo.data import SIDES, uncond_sides
from ualm_tk.dpo.logprob import guided_logprobs, scores_from_hidden, sequence_hidden
from ualm_tk.inference.cfg import check_guidance_scale
from ualm_tk.losses.dpo import dpo_loss
from ualm_tk.models.abs_model import AbsLMModel, ModelInputError
from ualm_tk.models.ualm import UALMModel

logger = logging.getLogger(__name__)


class UALMDPOModel(AbsLMModel):
    """See the module docstring."""

    @typechecked
    def __init__(self, policy: UALMModel, reference: Optional[UALMModel] = None, beta: float = 0.1,
                 ce_weight: float = 1.0, dpo_weight: float = 1.0, uncond_ce_weight: float = 0.0,
                 guidance_scale: Optional[float] = None, length_normalize: bool = False):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if ce_weight < 0 or dpo_weight < 0 or ce_weight + dpo_weight == 0:
            raise ValueError(f"ce_weight and dpo_weight must be >= 0 and not both 0, got {ce_weight}, {dpo_weight}")
        if not uncond_ce_weight >= 0:
            raise ValueError(f"uncond_ce_weight must be >= 0, got {uncond_ce_weight}")
        self.policy = policy
        ref = copy.deepcopy(policy) if reference is None else reference
        if set(ref.state_dict()) != set(policy.state_dict()):
            raise ModelInputError("the reference model's parameters differ from the policy's (another architecture?)")
        ref.eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "_reference", ref)  # not a submodule: no params, no state_dict keys
        self.beta, self.ce_weight, self.dpo_weight = float(beta), float(ce_weight), float(dpo_weight)
        self.uncond_ce_weight = float(uncond_ce_weight)
        self.guidance_scale = None if guidance_scale is None else check_guidance_scale(guidance_scale)
        self.uncond_sides = uncond_sides(self.guidance_scale, self.uncond_ce_weight)  # row blocks 3 (and 4)
        self.length_normalize = bool(length_normalize)
        self.layout = policy.layout

    @property
    def reference(self) -> UALMModel:
        return self._reference

    # ------------------------------------------------------------------ module plumbing
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._reference._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._reference.eval()
        return self

    def state_dict(self, *args, **kwargs):
        return self.policy.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.policy.load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        tokens: torch.Tensor,  # [RB,S,K]: B chosen rows, B rejected rows, then the unconditional blocks (module doc)
        loss_mask: torch.Tensor,  # [RB,S,K]
        lengths: Optional[torch.Tensor] = None,  # [RB]
        task_ids: Optional[torch.Tensor] = None,  # [RB]
        **kwargs,
    ):
        R = tokens.shape[0]
        parts = len(SIDES) + len(self.uncond_sides)
        if R % parts or R == 0:
            what = "B chosen rows then B rejected rows" + "".join(f", then B unconditional {side} rows"
                                                                   for side in self.uncond_sides)
            raise ModelInputError(f"a DPO batch holds {what}; got {R} rows")
        B = R // parts
        # row blocks: chosen, rejected, both (the pair's conditional rows), their unconditional forms (guided
        # DPO: blocks 3-4, in pair order), the unconditional chosen rows (block 3)
        ch, rj, pair = slice(0, B), slice(B, 2 * B), slice(0, 2 * B)
        un_pair, un_ch = slice(2 * B, 4 * B), slice(2 * B, 3 * B)
        guided = self.guidance_scale is not None

        def dpo_logp(model, hidden: torch.Tensor) -> torch.Tensor:
            """Summed log-probs [2B] of the pair's responses; ``hidden`` the decoder outputs of all rows
            (guided) or of the pair's conditional rows."""
            if not guided:
                return scores_from_hidden(model, hidden[pair], tokens[pair], loss_mask[pair]).logp
            return guided_logprobs(model, hidden[pair], hidden[un_pair], tokens[pair], tokens[un_pair],
                                   loss_mask[pair], loss_mask[un_pair], self.guidance_scale)

        hidden = sequence_hidden(self.policy, tokens, lengths)  # [RB,S-1,D]
        # conditional CE of the rows that use it: the pair (DPO, CE regulariser, statistics), and the unconditional
        # chosen rows only for their CE term (guided DPO's unconditional rows enter through dpo_logp alone)
        ce_rows = slice(0, 3 * B) if self.uncond_ce_weight > 0 else pair
        pol = scores_from_hidden(self.policy, hidden[ce_rows], tokens[ce_rows], loss_mask[ce_rows])
        pol_logp = dpo_logp(self.policy, hidden) if guided else pol.logp[pair]  # [2B]
        if self.dpo_weight > 0:
            ref_rows = slice(None) if guided else pair
            with torch.no_grad():
                ref_hidden = sequence_hidden(self._reference, tokens[ref_rows],
                                             None if lengths is None else lengths[ref_rows])
                ref_logp = dpo_logp(self._reference, ref_hidden)  # [2B]
        else:
            ref_logp = torch.zeros_like(pol_logp)
        if self.length_normalize:  # per-token log-probs; a response's weight is the same under both models
            weight = pol.weight[pair]  # [2B]
            pol_logp, ref_logp = pol_logp / weight, ref_logp / weight
        out = dpo_loss(pol_logp[ch], pol_logp[rj], ref_logp[ch], ref_logp[rj], beta=self.beta)

        def mean_ce(rows: slice) -> torch.Tensor:
            return pol.ce_sum[rows].sum() / pol.weight[rows].sum()

        ce_chosen = mean_ce(ch)
        loss = self.dpo_weight * out.loss + self.ce_weight * ce_chosen
        ce_uncond = mean_ce(un_ch) if self.uncond_ce_weight > 0 else None
        if ce_uncond is not None:
            loss = loss + self.uncond_ce_weight * ce_uncond
        on = pol.mask[ch] > 0  # [B,S-1,K]
        # a copy: ESPnet's trainer divides the returned loss in place by accum_grad (stats must not follow)
        stats: Dict[str, Optional[torch.Tensor]] = dict(loss=loss.detach().clone(), **out.stats())
        stats["ce_chosen"] = ce_chosen.detach()
        stats["ce_rejected"] = mean_ce(rj).detach()
        if ce_uncond is not None:
            stats["ce_uncond"] = ce_uncond.detach()
        stats["logp_margin"] = (pol_logp[ch] - pol_logp[rj]).detach().mean()  # policy's chosen − rejected (DPO's log-probs)
        stats["acc_chosen"] = (pol.correct[ch] & on).sum() / on.sum()
        return loss, stats, torch.tensor(float(B), device=loss.device)
