"""Any Hugging Face causal LM, loaded from a LOCAL directory, as a ``decoder``.

``AutoModelForCausalLM.from_pretrained(hf_model_dir, local_files_only=True)``; only the backbone
(``model.get_decoder()``, e.g. ``Qwen2Model``) is kept as a module and called with
``inputs_embeds`` (+ ``past_key_values`` for incremental decoding), returning its last hidden
states (after the final norm). Its token embedding is dropped from the module; the text embedding
matrix and lm_head weights are kept aside (not parameters, not in the state dict) so the UALM
model can copy them into its vocabulary once: :meth:`text_embedding_weight`,
:meth:`text_head_weight`, then :meth:`release_text_weights`.

The cache is the library's own: ``StaticCache`` (default, preallocated) or ``DynamicCache``,
wrapped in :class:`HFCacheState` with the same slot/position/padding bookkeeping as our
:class:`~ualm_tk.lm.kv_cache.KVCache`, so the inference loop treats both decoders alike.
Nothing is ever downloaded: a missing directory is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Tuple

import torch
from typeguard import typechecked

from ualm_tk.lm.abs_decoder import AbsDecoder, CacheOverflowError
from ualm_tk.lm.kv_cache import CacheBookkeeping

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFCacheState(CacheBookkeeping):
    """A transformers ``Cache`` plus slot/position/padding bookkeeping."""

    def __init__(self, hf_cache: Any, static: bool, batch: int, max_len: int, device: torch.device) -> None:
        super().__init__(batch, max_len, device)
        self.hf_cache = hf_cache
        self.static = static

    def kv_length(self, end: int) -> int:
        """Key length HF's mask builder expects after writing up to slot ``end``."""
        return self.max_len if self.static else end


class HFDecoder(AbsDecoder):
    """Backbone of a local Hugging Face causal LM over ``inputs_embeds [B, S, D]``."""

    @typechecked
    def __init__(
        self,
        hf_model_dir: str,
        dtype: str = "float32",
        cache_implementation: str = "static",
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = False,
        keep_text_weights: bool = True,
    ) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got '{dtype}'")
        if cache_implementation not in ("static", "dynamic"):
            raise ValueError(f"cache_implementation must be 'static' or 'dynamic', got '{cache_implementation}'")
        model_dir = Path(hf_model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"hf_model_dir '{hf_model_dir}' has no config.json: give a local directory written by "
                "save_pretrained (nothing is downloaded)"
            )
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=_DTYPES[dtype], attn_implementation=attn_implementation, local_files_only=True
        )
        if gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.hf_model_dir = str(model_dir)
        self.cache_implementation = cache_implementation
        self.config = model.config
        text_config = self.config.get_text_config(decoder=True)
        self._hidden_size = int(text_config.hidden_size)
        self._max_positions = getattr(text_config, "max_position_embeddings", None)
        self._text_embedding: Optional[torch.Tensor] = None
        self._text_head: Optional[torch.Tensor] = None
        if keep_text_weights:
            self._text_embedding = model.get_input_embeddings().weight.detach().clone()  # [V_text, D]
            head = model.get_output_embeddings()
            if head is not None:
                self._text_head = head.weight.detach().clone()  # [V_text, D]
        backbone = model.get_decoder()
        backbone.embed_tokens = None  # the UALM model owns the input embeddings
        self.backbone = backbone
        logger.info(
            "loaded %s from %s: %d backbone parameters, hidden %d, %s",
            type(model).__name__, model_dir, self.num_parameters(), self._hidden_size, dtype,
        )

    # ------------------------------------------------------------------ text weights
    def text_embedding_weight(self) -> torch.Tensor:
        """The backbone's text token embedding matrix ``[V_text, D]`` (a detached copy)."""
        if self._text_embedding is None:
            raise RuntimeError("text weights were released or not kept (keep_text_weights=False)")
        return self._text_embedding

    def text_head_weight(self) -> torch.Tensor:
        """The backbone's lm_head weight ``[V_text, D]`` (the embedding when they are tied)."""
        if self._text_embedding is None:
            raise RuntimeError("text weights were released or not kept (keep_text_weights=False)")
        return self._text_head if self._text_head is not None else self._text_embedding

    def release_text_weights(self) -> None:
        """Free the kept text embedding / head once they were copied."""
        self._text_embedding = self._text_head = None

    # ------------------------------------------------------------------ decoder API
    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def max_positions(self) -> Optional[int]:
        return self._max_positions

    def init_cache(self, batch, max_len, dtype=None, device=None) -> HFCacheState:
        from transformers import DynamicCache, StaticCache

        if self._max_positions is not None and max_len > self._max_positions:
            raise CacheOverflowError(
                f"requested cache of {max_len} positions exceeds max_position_embeddings {self._max_positions}"
            )
        device = device or next(self.backbone.parameters()).device
        static = self.cache_implementation == "static"
        hf_cache = StaticCache(config=self.config, max_cache_len=max_len) if static else DynamicCache(config=self.config)
        return HFCacheState(hf_cache, static, batch, max_len, device)

    def forward(
        self,
        embeds: torch.Tensor,  # [B, S, D]
        cache: Optional[HFCacheState] = None,
        positions: Optional[torch.Tensor] = None,  # [B, S]
        attention_mask: Optional[torch.Tensor] = None,  # [B, S], 1 = real
    ) -> Tuple[torch.Tensor, Optional[HFCacheState]]:
        self.check_inputs(embeds, positions, attention_mask)
        B, S, _ = embeds.shape
        if cache is None:
            if self._max_positions is not None and S > self._max_positions:
                raise CacheOverflowError(f"sequence of {S} positions exceeds max_position_embeddings {self._max_positions}")
            mask = None if attention_mask is None else attention_mask.to(dtype=torch.long)
            out = self.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
            return out.last_hidden_state, None
        start, end, cache_positions = cache.begin(B, S, attention_mask)
        if positions is None:
            positions = cache_positions
        mask = None
        if cache.key_mask is not None:
            mask = cache.key_mask[:, : cache.kv_length(end)].long()  # [B, S_kv]
        out = self.backbone(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
            past_key_values=cache.hf_cache, use_cache=True,
        )
        return out.last_hidden_state, cache
