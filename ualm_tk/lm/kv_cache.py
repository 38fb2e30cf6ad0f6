"""Static, preallocated key/value cache for :class:`ualm_tk.lm.transformer.TransformerDecoder`.

``keys`` / ``values`` are ``[L, B, n_kv, max_len, head_dim]`` tensors allocated once; every forward
call writes its ``S`` new positions into slots ``[length, length + S)`` in place (no ``torch.cat``,
no reallocation per step) and attention reads the view ``[..., :length + S, :]``.

All rows share the slot index (``length``); rows of a left-padded prompt batch differ only in
their rotary positions (``next_pos [B]``) and in ``key_mask [B, max_len]``, which is created the
first time padding is seen (None on the fast path where every slot of every row is real).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ualm_tk.lm.abs_decoder import CacheOverflowError


class CacheBookkeeping:
    """Slot index, per-row rotary positions and key padding shared by every cache kind."""

    def __init__(self, batch: int, max_len: int, device: Optional[torch.device] = None) -> None:
        if batch < 1 or max_len < 1:
            raise ValueError(f"a KV cache needs batch >= 1 and max_len >= 1, got batch={batch} max_len={max_len}")
        self.batch = batch
        self.max_len = max_len
        self.length = 0  # slots filled, same for every row
        self.next_pos = torch.zeros(batch, dtype=torch.long, device=device)  # [B] next rotary position
        self.key_mask: Optional[torch.Tensor] = None  # [B, max_len] bool, None = all real

    def reset_bookkeeping(self) -> None:
        self.length = 0
        self.next_pos.zero_()
        self.key_mask = None

    def begin(
        self, batch: int, num_new: int, attention_mask: Optional[torch.Tensor]
    ) -> Tuple[int, int, torch.Tensor]:
        """Reserve ``num_new`` slots; returns ``(start, end, positions [B, S])``.

        ``attention_mask [B, S]`` (1 = real) marks left padding; padded slots are masked for the
        rest of the decode and do not advance the row's rotary position.
        """
        if batch != self.batch:
            raise ValueError(f"cache was built for batch {self.batch}, got a batch of {batch}")
        start, end = self.length, self.length + num_new
        if end > self.max_len:
            raise CacheOverflowError(
                f"{num_new} new positions after {start} cached ones exceed the cache size {self.max_len} "
                f"(prompt or generation too long for max_len={self.max_len})"
            )
        device = self.next_pos.device
        if attention_mask is None:
            if num_new == 1:
                positions = self.next_pos[:, None].clone()  # [B, 1]
            else:
                positions = self.next_pos[:, None] + torch.arange(num_new, device=device)
            self.next_pos += num_new
            if self.key_mask is not None:
                self.key_mask[:, start:end] = True
        else:
            real = attention_mask.to(device=device, dtype=torch.bool)  # [B, S]
            counts = real.long().cumsum(1)  # [B, S]
            positions = (self.next_pos[:, None] + counts - 1).clamp_min(0)
            self.next_pos += counts[:, -1]
            if self.key_mask is not None or not bool(real.all()):
                if self.key_mask is None:
                    self.key_mask = torch.ones(self.batch, self.max_len, dtype=torch.bool, device=device)
                self.key_mask[:, start:end] = real
        self.length = end
        return start, end, positions


class KVCache(CacheBookkeeping):
    """Per-layer K/V storage plus the bookkeeping shared by all layers of one decoder."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__(batch, max_len, device)
        shape = (num_layers, batch, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, n_kv, max_len, hd]
        self.values = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, n_kv, max_len, hd]

    @property
    def dtype(self) -> torch.dtype:
        return self.keys.dtype

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()

    def reset(self) -> None:
        """Forget every position (storage is kept)."""
        self.reset_bookkeeping()

    def write(
        self, layer: int, start: int, end: int, k: torch.Tensor, v: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v [B, n_kv, S, hd]`` at slots ``[start, end)``; return views ``[B, n_kv, end, hd]``."""
        kc, vc = self.keys[layer], self.values[layer]
        kc[:, :, start:end].copy_(k)
        vc[:, :, start:end].copy_(v)
        return kc[:, :, :end], vc[:, :, :end]
