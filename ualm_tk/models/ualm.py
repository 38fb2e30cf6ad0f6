"""The UALM model (DESIGN.md §3): one decoder-only LM over text and RVQ codec tokens.

* Vocabulary: :class:`~ualm_tk.tokens.layout.TokenLayout` ``[specials | text | audio_0 | ... | audio_{K-1}]``.
* Input: ``tokens [B,S,K]`` -> sum over the K streams of ONE shared embedding table (``<pad>``
  row zero) -> ``[B,S,D]``; ``<audio_feats>`` positions get the audio encoder's features through
  the adapter instead (user-side audio). ``encoder_layer_mix``: the adapter reads a learned
  weighted sum of all the encoder's hidden layers instead of its last one (the weights train even
  when the encoder is frozen).
* Output: ``hidden [B,S,D]`` + a learned per-stream embedding (stream 0's fixed at zero) through
  ONE shared head. Restricted softmax: stream 0 is scored over specials + text + audio stream 0
  (the contiguous id range ``[0, audio_1)``: stream 0 carries text and the first codebook),
  stream k >= 1 only over its own codebook block (the head rows of that block are gathered, no
  full-vocabulary softmax is ever computed for them).
* Loss: ``sum(mask * CE) / sum(mask)`` with the task template's loss mask (assistant segments;
  audio stream positions weighted 1/K by default); position s predicts the tokens at s+1.
* Alignment phase (:meth:`UALMModel.set_alignment_phase`): only the adapter and the audio-token
  embedding rows train.
* ``cpu_bf16`` (``auto`` / ``true`` / ``false``, :mod:`ualm_tk.utils.cpu_precision`): on CPU, ``forward``
  (training and validation loss) runs under ``torch.autocast("cpu", bfloat16)``: matrix products in
  bfloat16, weights, gradients, optimizer state and the loss in float32 (mixed precision; CPUs with
  AVX512-BF16 or AMX run these products 2-3x faster than float32, CPUs without emulate them ~10x
  slower: ``auto`` turns it on only on the former). Inference (:mod:`ualm_tk.models.generation`)
  stays float32.
* Hugging Face backbone: its text embedding and head rows are copied into the text block.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from typeguard import typechecked

from ualm_tk.audio_encoder import AbsAudioEncoder, AudioAdapter, insert_features, pack_segments, placeholder_mask
from ualm_tk.data.task_templates import TASK_TEMPLATES
from ualm_tk.lm.abs_decoder import AbsDecoder
from ualm_tk.models.abs_model import AbsLMModel, ModelInputError
from ualm_tk.patterns.abs_pattern import AbsPattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout
from ualm_tk.utils.cpu_precision import CpuBf16Setting, resolve_cpu_bf16

logger = logging.getLogger(__name__)

# task id <-> name, fixed by sorting the template names (batches carry ids)
TASK_NAMES: Tuple[str, ...] = tuple(sorted(TASK_TEMPLATES))
TASK_IDS: Dict[str, int] = {t: i for i, t in enumerate(TASK_NAMES)}


class UALMModel(AbsLMModel):
    """See the module docstring. ``forward(**batch) -> (loss, stats, weight)``."""

    @typechecked
    def __init__(
        self,
        layout: TokenLayout,
        decoder: AbsDecoder,
        pattern: AbsPattern,
        audio_encoder: Optional[AbsAudioEncoder] = None,
        adapter_layers: int = 1,
        encoder_layer_mix: bool = False,
        init_std: float = 0.02,
        copy_text_weights: bool = True,
        alignment_phase: bool = False,
        cpu_bf16: CpuBf16Setting = False,
    ):
        super().__init__()
        self.cpu_bf16 = resolve_cpu_bf16(cpu_bf16, "model_conf.cpu_bf16")  # bool from here on
        self.layout = layout
        self.pattern = pattern
        self.decoder = decoder
        self.audio_encoder = audio_encoder
        K, V, D = layout.num_codebooks, layout.vocab_size, decoder.hidden_size
        self.num_streams = K
        self.vocab_size = V
        self.embed = torch.nn.Embedding(V, D, padding_idx=sp.PAD)
        self.head = torch.nn.Linear(D, V, bias=False)
        self.stream_embed = torch.nn.Parameter(torch.zeros(max(K - 1, 0), D))  # streams 1..K-1; stream 0 is 0
        torch.nn.init.normal_(self.embed.weight, std=init_std)
        torch.nn.init.normal_(self.head.weight, std=init_std)
        torch.nn.init.normal_(self.stream_embed, std=init_std)
        with torch.no_grad():
            self.embed.weight[sp.PAD].zero_()
        self.encoder_layer_mix = encoder_layer_mix and audio_encoder is not None
        if self.encoder_layer_mix and audio_encoder.num_hidden_layers is None:
            raise ValueError(
                f"model_conf.encoder_layer_mix: the audio encoder {type(audio_encoder).__name__} does not give its "
                "hidden layers; set encoder_layer_mix: false or use an encoder that does (mel_transformer, whisper)"
            )
        self.adapter = (
            AudioAdapter(
                audio_encoder.output_size, D, num_layers=adapter_layers,
                mix_layers=audio_encoder.num_hidden_layers if self.encoder_layer_mix else None,
            )
            if audio_encoder is not None
            else None
        )
        # stream 0 scores ids [0, s0_end): specials, text, audio stream 0
        self.s0_end = layout.stream_vocab_range(0)[1]
        if copy_text_weights and hasattr(decoder, "text_embedding_weight"):
            self._copy_text_weights(decoder)
        self._alignment_hook = None
        if alignment_phase:
            self.set_alignment_phase(True)

    # ------------------------------------------------------------------ set-up
    def _copy_text_weights(self, decoder) -> None:
        emb, head = decoder.text_embedding_weight(), decoder.text_head_weight()  # [V_hf, D]
        n = self.layout.text_size
        if emb.shape[0] < n or emb.shape[1] != self.embed.weight.shape[1]:
            raise ModelInputError(
                f"the backbone's text embedding is {tuple(emb.shape)}, the token layout's text block has {n} "
                f"tokens of width {self.embed.weight.shape[1]} (token list made with another tokenizer?)"
            )
        s = self.layout.text_start
        with torch.no_grad():
            self.embed.weight[s : s + n].copy_(emb[:n].to(self.embed.weight.dtype))
            self.head.weight[s : s + n].copy_(head[:n].to(self.head.weight.dtype))
        decoder.release_text_weights()
        logger.info("copied the backbone's text embedding and head rows into ids [%d, %d)", s, s + n)

    def set_alignment_phase(self, on: bool = True) -> None:
        """Freeze everything except the adapter and the audio-token embedding rows (``on``), or undo.

        The embedding table is one parameter: a gradient hook zeroes the gradient of its non-audio
        rows. Use ``weight_decay: 0`` in this phase (decoupled decay would still move those rows).
        """
        a0 = self.layout.audio_start
        for name, p in self.named_parameters():
            p.requires_grad_(not on or name.startswith("adapter.") or name == "embed.weight")
        if self.audio_encoder is not None and getattr(self.audio_encoder, "frozen", False):
            for p in self.audio_encoder.parameters():
                p.requires_grad_(False)
        if self._alignment_hook is not None:
            self._alignment_hook.remove()
            self._alignment_hook = None
        if on:
            rows = torch.zeros(self.vocab_size, 1)
            rows[a0:] = 1.0
            self._alignment_hook = self.embed.weight.register_hook(lambda g: g * rows.to(g.device, g.dtype))
        logger.info("alignment phase %s: %d trainable parameters", "on" if on else "off",
                    sum(p.numel() for p in self.parameters() if p.requires_grad))

    # ------------------------------------------------------------------ embeddings in
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B,S,K]`` -> ``embeds [B,S,D]`` (sum of the K stream embeddings)."""
        if tokens.dim() != 3 or tokens.shape[2] != self.num_streams:
            raise ModelInputError(f"tokens must be [B,S,K={self.num_streams}], got {tuple(tokens.shape)}")
        return self.embed(tokens).sum(dim=2)

    def input_embeds(
        self,
        tokens: torch.Tensor,  # [B,S,K]
        audio: Optional[torch.Tensor] = None,  # [N,1,L]
        audio_lengths: Optional[torch.Tensor] = None,  # [N]
        audio_rows: Optional[torch.Tensor] = None,  # [N]
    ) -> torch.Tensor:
        """Token embeddings with the encoder features written into ``<audio_feats>`` positions."""
        x = self.embed_tokens(tokens)
        ph = placeholder_mask(tokens)  # [B,S]
        n_ph = int(ph.sum())
        if n_ph == 0 and audio is None:
            return x
        if self.audio_encoder is None:
            raise ModelInputError(
                f"the batch has {n_ph} <audio_feats> positions but the model has no audio_encoder "
                "(set audio_encoder in the config for understanding tasks)"
            )
        if audio is None or audio_lengths is None or audio_rows is None:
            raise ModelInputError(f"the batch has {n_ph} <audio_feats> positions but no audio/audio_lengths/audio_rows")
        # [N,T',De] (or [H,N,T',De], every hidden layer, with encoder_layer_mix), [N]
        feats, flen = self.audio_encoder(audio, audio_lengths, all_layers=self.encoder_layer_mix)
        feats = self.adapter(feats)  # [N,T',D]
        row_feats, row_len = pack_segments(feats, flen, [int(r) for r in audio_rows.tolist()], tokens.shape[0])
        return insert_features(x, ph, row_feats, row_len)

    # ------------------------------------------------------------------ logits out
    def stream_logits(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``hidden [B,S,D]`` -> ``(logits0 [B,S,s0_end], logits_a [B,S,K-1,N])`` (restricted softmaxes).

        ``logits0`` covers ids ``[0, s0_end)``; ``logits_a[..., k-1, c]`` is code ``c`` of stream ``k``.
        """
        W = self.head.weight  # [V,D]
        logits0 = F.linear(hidden, W[: self.s0_end])
        K, N = self.num_streams, self.layout.codebook_size
        if K == 1:
            return logits0, None
        Wa = W[self.layout.stream_start(1) :].view(K - 1, N, -1)  # [K-1,N,D]
        h = hidden.unsqueeze(2) + self.stream_embed  # [B,S,K-1,D]
        logits_a = torch.einsum("bskd,knd->bskn", h, Wa)  # [B,S,K-1,N]
        return logits0, logits_a

    def full_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [B,S,D]`` -> ``logits [B,S,K,V]``, ``-1e9`` outside each stream's scored range (inference).

        Finite (not ``-inf``) so that CFG's ``λ·cond + (1−λ)·uncond`` stays finite; the decode
        loop's vocabulary mask then removes those ids (their probability underflows to 0 anyway).
        """
        B, S, _ = hidden.shape
        logits0, logits_a = self.stream_logits(hidden)
        out = hidden.new_full((B, S, self.num_streams, self.vocab_size), -1e9)
        out[:, :, 0, : self.s0_end] = logits0
        N = self.layout.codebook_size
        for k in range(1, self.num_streams):
            a = self.layout.stream_start(k)
            out[:, :, k, a : a + N] = logits_a[:, :, k - 1]
        return out

    # ------------------------------------------------------------------ training
    def forward(
        self,
        tokens: torch.Tensor,  # [B,S,K] long
        loss_mask: torch.Tensor,  # [B,S,K] float
        lengths: Optional[torch.Tensor] = None,  # [B]
        task_ids: Optional[torch.Tensor] = None,  # [B]
        audio: Optional[torch.Tensor] = None,  # [N,1,L]
        audio_lengths: Optional[torch.Tensor] = None,  # [N]
        audio_rows: Optional[torch.Tensor] = None,  # [N]
        **kwargs,
    ):
        if tokens.shape != loss_mask.shape:
            raise ModelInputError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} differ")
        B, S, K = tokens.shape
        if S < 2:
            raise ModelInputError(f"sequences need at least 2 positions, got S={S}")
        attn = None
        if lengths is not None:
            attn = torch.arange(S, device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]  # [B,S]
        target = tokens[:, 1:]  # [B,S-1,K]
        mask = loss_mask[:, 1:].float()  # [B,S-1,K]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_bf16 and tokens.device.type == "cpu"):
            x = self.input_embeds(tokens, audio, audio_lengths, audio_rows)
            hidden, _ = self.decoder(x[:, :-1], attention_mask=None if attn is None else attn[:, :-1])
            ce, correct = self._stream_ce(hidden, target, mask)  # [B,S-1,K] each (ce float32)
        wsum = mask.sum()
        if float(wsum) <= 0:
            raise ModelInputError("the batch has no position with loss (all loss_mask entries are zero)")
        loss = (ce * mask).sum() / wsum
        on = mask > 0
        # the same stat keys in every batch, NaN where a stat has no position (ESPnet's Reporter skips
        # non-finite values); under DDP every rank must all-reduce the same keys in the same order
        nan = loss.new_tensor(float("nan")).detach()
        # a copy: ESPnet's trainer divides the returned loss in place by accum_grad (stats must not follow)
        stats: Dict[str, torch.Tensor] = dict(loss=loss.detach().clone())
        n0 = on[..., 0].sum()
        stats["acc_stream0"] = (correct[..., 0] & on[..., 0]).sum() / n0 if int(n0) else nan
        if K > 1:
            na = on[..., 1:].sum()
            stats["acc_audio"] = (correct[..., 1:] & on[..., 1:]).sum() / na if int(na) else nan
        if task_ids is not None:
            row_loss = (ce * mask).sum(dim=(1, 2))  # [B]
            row_w = mask.sum(dim=(1, 2))  # [B]
            for tid, name in enumerate(TASK_NAMES):
                sel = task_ids == tid
                w = row_w[sel].sum()
                stats[f"loss_{name}"] = (row_loss[sel].sum() / w).detach() if float(w) > 0 else nan
        weight = torch.tensor(float(B), device=loss.device)
        # 1-dim tensors, as ESPnet's DataParallel/DDP averaging (recursive_average) requires
        return force_gatherable((loss, stats, weight), loss.device)

    def _stream_ce(
        self, hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, all_positions: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-position CE and correctness ``[B,S',K]`` over each stream's restricted range.

        Only the positions that carry loss go through the head: stream 0 where its mask is on, streams
        >= 1 where any of theirs is (a text-only batch computes no audio logits at all; prompts and audio
        features none). Where the mask is off, CE is 0 and correctness False. ``all_positions`` puts every
        position through the head instead (the reference the tests and ``benchmarks/train_speed.py`` compare
        with); the values are the same.
        """
        on = mask > 0  # [B,S',K]
        B, S, K = target.shape
        W = self.head.weight  # [V,D]
        on0 = on[..., 0]  # [B,S']
        bad = on0 & (target[..., 0] >= self.s0_end)
        if bool(bad.any()):
            b, s = (int(i) for i in bad.nonzero()[0])
            raise ModelInputError(f"row {b} position {s + 1}: stream-0 target id {int(target[b, s, 0])} is outside [0, {self.s0_end})")
        sel0 = torch.ones_like(on0) if all_positions else on0  # [B,S'] positions through the head
        t0 = torch.where(on0, target[..., 0], torch.zeros_like(target[..., 0]))[sel0]  # [P0]
        logits0 = F.linear(hidden[sel0], W[: self.s0_end])  # [P0,s0_end]
        zeros = hidden.new_zeros((B, S), dtype=torch.float32)
        ce0 = zeros.masked_scatter(sel0, F.cross_entropy(logits0.float(), t0, reduction="none"))  # [B,S']
        ce0 = torch.where(on0, ce0, torch.zeros_like(ce0))
        cor0 = torch.zeros_like(sel0).masked_scatter(sel0, logits0.argmax(-1) == t0) & on0  # [B,S']
        if K == 1:
            return ce0[..., None], cor0[..., None]
        selA = on[..., 1:].any(-1)  # [B,S'] positions where some stream >= 1 has loss
        if all_positions:
            selA = torch.ones_like(selA)
        onA = on[..., 1:][selA]  # [PA,K-1]
        ta = self._local_codes(target[..., 1:][selA], onA, selA, target)  # [PA,K-1]
        N = self.layout.codebook_size
        Wa = W[self.layout.stream_start(1) :].view(K - 1, N, -1)  # [K-1,N,D]
        h = hidden[selA].unsqueeze(1) + self.stream_embed  # [PA,K-1,D]
        logits_a = torch.einsum("pkd,knd->pkn", h, Wa)  # [PA,K-1,N]
        cea = F.cross_entropy(logits_a.permute(0, 2, 1).float(), ta, reduction="none")  # [PA,K-1]
        cea = torch.where(onA, cea, torch.zeros_like(cea))
        whereA = selA[..., None].expand(B, S, K - 1)  # [B,S',K-1]
        ceA = hidden.new_zeros((B, S, K - 1), dtype=torch.float32).masked_scatter(whereA, cea)
        # stream_embed stays in the graph (a zero gradient) when no position has audio loss: DDP without
        # find_unused_parameters expects every parameter to receive a gradient in every step
        ceA = ceA + 0.0 * self.stream_embed.sum()
        corA = torch.zeros_like(whereA).masked_scatter(whereA, (logits_a.argmax(-1) == ta) & onA)
        return torch.cat([ce0[..., None], ceA], dim=-1), torch.cat([cor0[..., None], corA], dim=-1)

    def _local_codes(
        self, ids: torch.Tensor, on: torch.Tensor, sel: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Vocabulary ids ``[P,K-1]`` of streams 1..K-1 at the positions ``sel [B,S']`` -> local codes, 0 where
        ``on [P,K-1]`` is off; a scored id outside its stream's codebook block is an error."""
        starts = torch.tensor([self.layout.stream_start(k) for k in range(1, self.num_streams)], device=ids.device)
        local = ids - starts  # [P,K-1]
        bad = on & ((local < 0) | (local >= self.layout.codebook_size))
        if bool(bad.any()):
            p, k = (int(i) for i in bad.nonzero()[0])
            b, s = (int(i) for i in sel.nonzero()[p])
            raise ModelInputError(
                f"row {b} position {s + 1}: stream {k + 1} target id {int(target[b, s, k + 1])} is not in its "
                f"codebook block {self.layout.stream_vocab_range(k + 1)}"
            )
        return torch.where(on, local, torch.zeros_like(local))

    # ------------------------------------------------------------------ inference helpers
    def logits_fn(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [N,1,D]`` -> ``logits [N,K,V]`` for :func:`ualm_tk.inference.generate`."""
        return self.full_logits(hidden)[:, 0]

    def embed_fn(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [N,1,K]`` -> ``embeds [N,1,D]``."""
        return self.embed_tokens(tokens)
