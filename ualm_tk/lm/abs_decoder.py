"""Abstract base of the ``decoder`` registry: a causal decoder over embeddings with a KV cache.

The decoder sees only embeddings: the UALM model owns the summed stream embeddings going in and
the shared output head coming out. Shapes: ``embeds [B, S, D]`` in, ``hidden [B, S, D]`` out
(after the final norm), ``attention_mask [B, S]`` (1/True = real token, 0 = padding).

Two ways to call ``forward``:

* training / full recomputation: ``cache=None``; positions default to ``0..S-1`` and attention is
  causal (plus key padding when ``attention_mask`` is given);
* incremental: ``cache = decoder.init_cache(B, max_len, dtype, device)``; each call appends its
  ``S`` positions to the cache (prefill with the whole prompt once, then ``S = 1`` per step). A
  prompt batch with different lengths is LEFT-padded and its ``attention_mask`` given at prefill;
  rotary positions then count real tokens only, and padded slots are never attended to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional, Tuple

import torch


class DecoderInputError(ValueError):
    """Embeddings, masks or positions handed to a decoder have the wrong shape or size."""


class CacheOverflowError(DecoderInputError):
    """More positions were fed than the KV cache (or the model's position table) can hold."""


class AbsDecoder(torch.nn.Module, ABC):
    """Interface every registered decoder implements."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """``D``: width of the embeddings in and the hidden states out."""

    @property
    def max_positions(self) -> Optional[int]:
        """Longest sequence the decoder supports (None = no fixed limit)."""
        return None

    @abstractmethod
    def init_cache(
        self,
        batch: int,
        max_len: int,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
    ) -> Any:
        """An empty KV cache for ``batch`` rows and up to ``max_len`` positions."""

    @abstractmethod
    def forward(
        self,
        embeds: torch.Tensor,
        cache: Any = None,
        positions: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Any]:
        """``embeds [B, S, D]`` -> ``(hidden [B, S, D], cache)``.

        ``positions [B, S]`` (long) overrides the rotary positions; ``attention_mask [B, S]``
        marks real tokens (left padding at prefill; any padding without a cache).
        """

    # ------------------------------------------------------------------ shared checks
    def check_inputs(
        self,
        embeds: torch.Tensor,
        positions: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
    ) -> None:
        """Raise :class:`DecoderInputError` for inputs of the wrong rank, width or length."""
        if embeds.dim() != 3:
            raise DecoderInputError(f"embeds must be [B, S, D], got shape {tuple(embeds.shape)}")
        B, S, D = embeds.shape
        if S == 0:
            raise DecoderInputError("embeds has no positions (S = 0): an empty prompt cannot be decoded")
        if D != self.hidden_size:
            raise DecoderInputError(f"embeds width {D} != decoder hidden_size {self.hidden_size}")
        if positions is not None and tuple(positions.shape) != (B, S):
            raise DecoderInputError(f"positions must be [B, S] = {(B, S)}, got {tuple(positions.shape)}")
        if attention_mask is not None and tuple(attention_mask.shape) != (B, S):
            raise DecoderInputError(
                f"attention_mask must be [B, S] = {(B, S)}, got {tuple(attention_mask.shape)}"
            )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
