"""Direct Preference Optimisation loss (Rafailov et al. 2023) as a pure function.

Inputs are summed sequence log-probabilities ``[B]`` of the chosen (c) and rejected (r) responses
under the policy (π) and the frozen reference (ref)::

    h    = β·((π_c − ref_c) − (π_r − ref_r))
    loss = mean(−log σ(h))

With policy == reference ``h = 0`` and the loss is ``log 2``. The implicit rewards are
``β·(π − ref)`` per response; their margin ``h`` and the share of pairs with ``h > 0``
(reward accuracy) are returned for logging. Reference log-probs carry no gradient by
construction of the caller (``torch.no_grad``); this function does not detach them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DPOOutput:
    """``loss`` (scalar, differentiable) and detached statistics (scalars)."""

    loss: torch.Tensor
    reward_chosen: torch.Tensor  # mean β(π_c − ref_c)
    reward_rejected: torch.Tensor  # mean β(π_r − ref_r)
    reward_margin: torch.Tensor  # mean h
    reward_accuracy: torch.Tensor  # share of pairs with h > 0

    def stats(self, prefix: str = "dpo_") -> dict:
        return {
            f"{prefix}loss": self.loss.detach(),
            f"{prefix}reward_chosen": self.reward_chosen,
            f"{prefix}reward_rejected": self.reward_rejected,
            f"{prefix}reward_margin": self.reward_margin,
            f"{prefix}reward_accuracy": self.reward_accuracy,
        }


def dpo_loss(
    policy_chosen: torch.Tensor,  # [B]
    policy_rejected: torch.Tensor,  # [B]
    ref_chosen: torch.Tensor,  # [B]
    ref_rejected: torch.Tensor,  # [B]
    beta: float = 0.1,
) -> DPOOutput:
    """``-logsigmoid(β((π_c − ref_c) − (π_r − ref_r)))`` averaged over the B pairs (see module doc)."""
    shapes = {t.shape for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or policy_chosen.dim() != 1:
        raise ValueError(
            "dpo_loss takes four [B] tensors of summed log-probs, got shapes "
            f"{[tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]}"
        )
    if policy_chosen.numel() == 0:
        raise ValueError("dpo_loss: no pairs (B = 0)")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    r_c = beta * (policy_chosen - ref_chosen)  # [B]
    r_r = beta * (policy_rejected - ref_rejected)  # [B]
    h = r_c - r_r  # [B]
    loss = -F.logsigmoid(h).mean()
    return DPOOutput(
        loss=loss,
        reward_chosen=r_c.detach().mean(),
        reward_rejected=r_r.detach().mean(),
        reward_margin=h.detach().mean(),
        reward_accuracy=(h.detach() > 0).float().mean(),
    )
