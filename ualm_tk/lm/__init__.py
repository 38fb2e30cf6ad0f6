"""The ``decoder`` registry: ``decoder: <name>`` + ``decoder_conf: {...}`` in YAML.

| name | class | weights |
|---|---|---|
| ``transformer`` | :class:`ualm_tk.lm.transformer.TransformerDecoder` (pre-norm, RoPE, GQA, SDPA, static KV cache) | the model's own |
| ``hf`` | :class:`ualm_tk.lm.hf_decoder.HFDecoder` (any causal LM from a local ``hf_model_dir``) | loaded from the directory |

Interface (:class:`AbsDecoder`): ``forward(embeds [B,S,D], cache=None, positions=None,
attention_mask=None) -> (hidden [B,S,D], cache)``, ``hidden_size``, ``init_cache(batch, max_len,
dtype, device)``. ``transformers`` is imported only when an ``hf`` decoder is built.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from espnet2.train.class_choices import ClassChoices

from ualm_tk.lm.abs_decoder import AbsDecoder, CacheOverflowError, DecoderInputError
from ualm_tk.lm.hf_decoder import HFCacheState, HFDecoder
from ualm_tk.lm.kv_cache import KVCache
from ualm_tk.lm import gemv_kernel
from ualm_tk.lm.linear import FewRowLinear
from ualm_tk.lm.transformer import PRESETS, TransformerDecoder

REGISTRY = "decoder"

decoder_choices = ClassChoices(
    REGISTRY,
    classes=dict(
        transformer=TransformerDecoder,
        hf=HFDecoder,
    ),
    type_check=AbsDecoder,
    default="transformer",
)


def build_decoder(name: str, conf: Optional[Dict[str, Any]] = None) -> AbsDecoder:
    """Build a decoder by registry name (e.g. from YAML ``decoder`` / ``decoder_conf``)."""
    cls = decoder_choices.get_class(name)
    return cls(**(conf or {}))


__all__ = [
    "AbsDecoder", "DecoderInputError", "CacheOverflowError", "KVCache", "HFCacheState", "FewRowLinear", "gemv_kernel",
    "TransformerDecoder", "HFDecoder", "PRESETS", "decoder_choices", "build_decoder",
]
