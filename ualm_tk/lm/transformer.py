"""The built-in decoder: a pre-norm transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU).

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with ``enable_gqa``
(no repeat of K/V heads): ``is_causal`` for a prefill from an empty cache or an unpadded training
batch, an explicit boolean mask ``[B, 1, S, S_kv]`` only where padding or a chunk after cached
positions needs one. Incremental decoding writes into a static :class:`KVCache`. Optional
activation checkpointing (per block) for training.

Sizes are free (YAML ``decoder_conf``); :data:`PRESETS` names the ones used in this toolkit:
``tiny`` (~0.7 M, tests), ``mini`` (~23 M, the CPU recipe) and ``200m`` (the speed benchmark).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from typeguard import typechecked

from ualm_tk.lm.abs_decoder import AbsDecoder, CacheOverflowError, DecoderInputError
from ualm_tk.lm.kv_cache import KVCache
from ualm_tk.lm.linear import FewRowLinear

logger = logging.getLogger(__name__)

PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=352),
    "mini": dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2, intermediate_size=1408),
    "200m": dict(hidden_size=1024, num_layers=12, num_heads=16, num_kv_heads=4, intermediate_size=2816),
}


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: ``x·cos + [-x2, x1]·sin`` written as ``x·cos + roll(x)·[-sin, sin]``.

    ``x [B, H, S, hd]``; ``cos``, ``sin_signed`` broadcastable ``[*, 1, S, hd]`` (3 ops, no cat).
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


class RotaryTable(torch.nn.Module):
    """Precomputed ``cos, sin_signed [max_positions, head_dim]`` (rotate-half layout, see apply_rope)."""

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)  # [P, hd/2]
        cos, sin = angles.cos().float(), angles.sin().float()  # [P, hd/2]
        self.register_buffer("cos", torch.cat((cos, cos), dim=-1), persistent=False)  # [P, hd]
        self.register_buffer("sin", torch.cat((-sin, sin), dim=-1), persistent=False)  # [P, hd], signed

    def lookup(
        self, positions: Optional[torch.Tensor], length: int, dtype: torch.dtype
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``positions [B, S]`` (or None = ``0..length-1``) -> ``cos, sin [B or 1, 1, S, hd]``."""
        if positions is None:
            cos, sin = self.cos[:length][None, None], self.sin[:length][None, None]
        else:
            cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        if cos.dtype != dtype:
            cos, sin = cos.to(dtype), sin.to(dtype)
        return cos, sin


class Attention(torch.nn.Module):
    """Grouped-query self-attention with a fused QKV projection."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.qkv = FewRowLinear(hidden_size, (num_heads + 2 * num_kv_heads) * head_dim, bias=False)
        self.out = FewRowLinear(num_heads * head_dim, hidden_size, bias=False)
        self.dropout = dropout

    def forward(
        self,
        x: torch.Tensor,  # [B, S, D]
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: Optional[torch.Tensor],  # [B or 1, 1, S, S_kv] bool or None
        is_causal: bool,
        cache: Optional[KVCache],
        layer: int,
        start: int,
        end: int,
    ) -> torch.Tensor:
        B, S, _ = x.shape
        H, Hkv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = self.qkv(x).view(B, S, H + 2 * Hkv, hd)
        qk = apply_rope(qkv[:, :, : H + Hkv].transpose(1, 2), cos, sin)  # [B, H + Hkv, S, hd], one rotation
        q, k = qk.split((H, Hkv), dim=1)  # [B, H, S, hd], [B, Hkv, S, hd]
        v = qkv[:, :, H + Hkv:].transpose(1, 2)  # [B, Hkv, S, hd]
        if cache is not None:
            k, v = cache.write(layer, start, end, k, v)  # [B, Hkv, end, hd]
        if S == 1 and not is_causal and not (self.training and self.dropout > 0):
            # one query per row: fold the G = H / Hkv query heads of each KV head into the query
            # axis ([B, Hkv, G, hd]); plain SDPA then needs no K/V repeat and no GQA kernel
            y = F.scaled_dot_product_attention(q.view(B, Hkv, H // Hkv, hd), k, v, attn_mask=mask)
            return self.out(y.reshape(B, 1, H * hd))  # [B, Hkv, G, hd] -> [B, 1, H*hd]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=H != Hkv,
        )  # [B, H, S, hd]
        return self.out(y.transpose(1, 2).reshape(B, S, H * hd))


class SwiGLU(torch.nn.Module):
    """``down(silu(gate(x)) * up(x))`` with gate and up fused into one projection."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_up = FewRowLinear(hidden_size, 2 * intermediate_size, bias=False)
        self.down = FewRowLinear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(torch.nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    ``dropout`` drops the two residual-branch outputs; ``attention_dropout`` the attention weights.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int,
        intermediate_size: int, norm_eps: float, dropout: float, attention_dropout: float,
    ) -> None:
        super().__init__()
        self.attn_norm = torch.nn.RMSNorm(hidden_size, eps=norm_eps)
        self.attn = Attention(hidden_size, num_heads, num_kv_heads, head_dim, attention_dropout)
        self.mlp_norm = torch.nn.RMSNorm(hidden_size, eps=norm_eps)
        self.mlp = SwiGLU(hidden_size, intermediate_size)
        self.resid_dropout = torch.nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x, cos, sin, mask, is_causal, cache, layer, start, end):
        h = self.attn(self.attn_norm(x), cos, sin, mask, is_causal, cache, layer, start, end)
        if self.resid_dropout is not None:
            h = self.resid_dropout(h)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.resid_dropout is not None:
            h = self.resid_dropout(h)
        return x + h


def attention_mask_for(
    num_new: int,
    start: int,
    end: int,
    key_mask: Optional[torch.Tensor],
    device: torch.device,
) -> Tuple[Optional[torch.Tensor], bool]:
    """Mask for ``num_new`` queries at slots ``[start, end)`` over keys ``[0, end)``.

    ``key_mask [B, end]`` (True = real key) or None. Returns ``(mask [B|1, 1, S, end] or None,
    is_causal)``. A query always sees its own slot, so rows of pure padding stay finite.
    """
    if key_mask is None:
        if num_new == 1:
            return None, False  # one query sees every cached key
        if start == 0:
            return None, True
        q_slot = torch.arange(start, end, device=device)[:, None]  # [S, 1]
        return (torch.arange(end, device=device)[None, :] <= q_slot)[None, None], False
    if num_new == 1:
        return key_mask[:, None, None, :], False  # [B, 1, 1, end]
    q_slot = torch.arange(start, end, device=device)[:, None]  # [S, 1]
    k_slot = torch.arange(end, device=device)[None, :]  # [1, end]
    causal = k_slot <= q_slot  # [S, end]
    mask = (causal[None] & key_mask[:, None, :]) | (k_slot == q_slot)[None]  # [B, S, end]
    return mask[:, None], False


class TransformerDecoder(AbsDecoder):
    """Pre-norm transformer decoder over embeddings ``[B, S, D]`` (see module doc)."""

    @typechecked
    def __init__(
        self,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        num_kv_heads: Optional[int] = None,
        intermediate_size: Optional[int] = None,
        max_positions: int = 4096,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        attention_dropout: Optional[float] = None,
        activation_checkpointing: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of num_kv_heads {num_kv_heads}")
        head_dim = hidden_size // num_heads
        if head_dim % 2:
            raise ValueError(f"head_dim {head_dim} must be even for RoPE")
        if intermediate_size is None:  # 8/3 * D rounded up to a multiple of 64
            intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)
        if max_positions < 1 or num_layers < 1:
            raise ValueError(f"need num_layers >= 1 and max_positions >= 1, got {num_layers}, {max_positions}")
        # None: the attention weights drop at the residual rate. 0.0 with dropout > 0 keeps SDPA's fused
        # CPU kernel in training (dropout_p > 0 falls back to the math path: ~2x the forward time on the mini model)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        for name, rate in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"decoder {name} must be in [0, 1), got {rate}")
        self._hidden_size = hidden_size
        self.num_layers, self.num_heads, self.num_kv_heads = num_layers, num_heads, num_kv_heads
        self.head_dim, self.intermediate_size = head_dim, intermediate_size
        self._max_positions = max_positions
        self.activation_checkpointing = activation_checkpointing
        self.rope = RotaryTable(head_dim, max_positions, rope_theta)
        self.blocks = torch.nn.ModuleList(
            Block(hidden_size, num_heads, num_kv_heads, head_dim, intermediate_size, norm_eps, dropout, attention_dropout)
            for _ in range(num_layers)
        )
        self.norm = torch.nn.RMSNorm(hidden_size, eps=norm_eps)
        self._init_weights(init_std)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TransformerDecoder":
        if name not in PRESETS:
            raise ValueError(f"unknown transformer preset '{name}' (known: {sorted(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})

    def _init_weights(self, std: float) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # residual-branch outputs scaled down with depth (GPT-2 style)
                scale = 1.0 / math.sqrt(2 * self.num_layers) if name.endswith(("out.weight", "down.weight")) else 1.0
                torch.nn.init.normal_(p, mean=0.0, std=std * scale)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def max_positions(self) -> int:
        return self._max_positions

    def init_cache(self, batch, max_len, dtype=None, device=None) -> KVCache:
        if max_len > self._max_positions:
            raise CacheOverflowError(
                f"requested cache of {max_len} positions exceeds the decoder's max_positions {self._max_positions}"
            )
        ref = self.norm.weight
        return KVCache(
            self.num_layers, batch, self.num_kv_heads, max_len, self.head_dim,
            dtype=dtype or ref.dtype, device=device or ref.device,
        )

    def forward(
        self,
        embeds: torch.Tensor,  # [B, S, D]
        cache: Optional[KVCache] = None,
        positions: Optional[torch.Tensor] = None,  # [B, S] long
        attention_mask: Optional[torch.Tensor] = None,  # [B, S], 1 = real
    ) -> Tuple[torch.Tensor, Optional[KVCache]]:
        self.check_inputs(embeds, positions, attention_mask)
        B, S, _ = embeds.shape
        if cache is not None:
            start, end, cache_positions = cache.begin(B, S, attention_mask)
            if positions is None:
                positions = cache_positions
            mask, is_causal = attention_mask_for(
                S, start, end, None if cache.key_mask is None else cache.key_mask[:, :end], embeds.device
            )
        else:
            start, end = 0, S
            if S > self._max_positions:
                raise CacheOverflowError(f"sequence of {S} positions exceeds max_positions {self._max_positions}")
            key_mask = None
            if attention_mask is not None:
                key_mask = attention_mask.to(device=embeds.device, dtype=torch.bool)
                if bool(key_mask.all()):
                    key_mask = None
            mask, is_causal = attention_mask_for(S, 0, S, key_mask, embeds.device)
        if positions is not None and cache is None and int(positions.max()) >= self._max_positions:
            raise CacheOverflowError(f"a position >= max_positions {self._max_positions} was given")
        cos, sin = self.rope.lookup(positions, S, embeds.dtype)

        x = embeds
        use_ckpt = self.activation_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if use_ckpt:
                x = checkpoint(block, x, cos, sin, mask, is_causal, None, i, start, end, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, is_causal, cache, i, start, end)
        return self.norm(x), cache
