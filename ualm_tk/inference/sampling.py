"""Per-step token choice over multi-stream logits ``[B, K, V]``.

* :func:`stream_vocab_mask` builds the allowed-id table ``[K, V]`` once: stream ``k`` may emit ids
  in ``[lo_k, hi_k)`` plus its allowed specials (e.g. ``<eos>``/``<eot>`` for stream 0, ``<pad>``);
  :func:`vocab_bias` turns it into an additive ``0 / -inf`` bias applied with one add per step.
* :class:`SamplingConfig` + :func:`sample_tokens`: greedy (argmax) or top-k with temperature,
  drawing from an explicit ``torch.Generator`` so a seed reproduces the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch


class SamplingError(ValueError):
    """Invalid sampling parameters or vocabulary masks."""


@dataclass(frozen=True)
class SamplingConfig:
    """``greedy`` (text) or top-``top_k`` sampling at ``temperature`` (audio; paper code 20 / 0.8)."""

    greedy: bool = False
    top_k: int = 20
    temperature: float = 0.8

    def __post_init__(self) -> None:
        if not self.greedy:
            if self.top_k < 1:
                raise SamplingError(f"top_k must be >= 1, got {self.top_k}")
            if not self.temperature > 0:
                raise SamplingError(f"temperature must be > 0, got {self.temperature}")


def stream_vocab_mask(
    vocab_size: int,
    ranges: Sequence[Tuple[int, int]],
    specials: Union[Sequence[int], Sequence[Sequence[int]]] = (),
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Allowed ids per stream -> ``allowed [K, V]`` bool.

    ``ranges[k] = (lo_k, hi_k)``: stream k may emit ids ``lo_k <= id < hi_k`` (an empty range
    ``(0, 0)`` allows none). ``specials`` is one list of ids allowed in every stream, or one list
    per stream. Every stream must allow at least one id.
    """
    K = len(ranges)
    if K == 0:
        raise SamplingError("stream_vocab_mask needs at least one stream range")
    if len(specials) and isinstance(specials[0], (list, tuple)):
        if len(specials) != K:
            raise SamplingError(f"specials has {len(specials)} per-stream lists for {K} streams")
        per_stream = [list(s) for s in specials]
    else:
        per_stream = [list(specials)] * K
    allowed = torch.zeros(K, vocab_size, dtype=torch.bool, device=device)
    for k, (lo, hi) in enumerate(ranges):
        if not 0 <= lo <= hi <= vocab_size:
            raise SamplingError(f"stream {k}: range [{lo}, {hi}) is not inside the vocabulary [0, {vocab_size})")
        allowed[k, lo:hi] = True
        for sid in per_stream[k]:
            if not 0 <= sid < vocab_size:
                raise SamplingError(f"stream {k}: special id {sid} is outside the vocabulary [0, {vocab_size})")
            allowed[k, sid] = True
        if not bool(allowed[k].any()):
            raise SamplingError(f"stream {k} allows no token id (range [{lo}, {hi}), no specials)")
    return allowed


def vocab_bias(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``allowed [K, V]`` bool -> additive bias ``[K, V]``: 0 where allowed, -inf elsewhere."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, float("-inf"))


def sample_tokens(
    logits: torch.Tensor,  # [B, K, V] (already masked)
    config: SamplingConfig,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``logits [B, K, V]`` -> ``tokens [B, K]`` (long): argmax, or a draw among the top-k."""
    if config.greedy:
        return logits.argmax(dim=-1)
    B, K, V = logits.shape
    k = min(config.top_k, V)
    values, index = logits.topk(k, dim=-1)  # [B, K, k]
    probs = torch.softmax(values.float() / config.temperature, dim=-1)  # -inf entries get 0
    choice = torch.multinomial(probs.view(B * K, k), 1, generator=generator)  # [B*K, 1]
    return index.view(B * K, k).gather(1, choice).view(B, K)
