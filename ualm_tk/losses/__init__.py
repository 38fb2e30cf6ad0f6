"""Training losses that are pure functions of tensors (no model inside)."""

from ualm_tk.losses.dpo import DPOOutput, dpo_loss

__all__ = ["DPOOutput", "dpo_loss"]
