"""``clap_mini``: a small CLAP-style text–audio contrastive model trained on the recipe's captions.

Audio: 16 kHz log-mel -> :class:`ConvTransformerBackbone` (the tagger's; ``scorer_train
--init_from <tagger dir>`` copies a trained tagger's backbone) -> attention pooling -> linear ->
unit norm ``[E]``. Text: its own word tokenizer (lower-cased ``[a-z0-9]+`` words; the vocabulary
is built from the training captions and stored in ``component.yaml``; unseen words map to
``<unk>``) -> embeddings + sinusoidal positions -> pre-norm transformer -> masked mean ->
linear -> unit norm ``[E]``. Loss: symmetric InfoNCE with a learned temperature (CLIP's
``logit_scale``, clamped at 100); identical captions in a batch count as positives of each other
(so a clip and its codec resynthesis, trained together, are positives of one caption).
``level_norm`` and ``stem_channels`` as in :mod:`ualm_tk.scoring.models.tagger`.
"""

from __future__ import annotations

import collections
import logging
import math
import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from typeguard import typechecked

from ualm_tk.audio_encoder.mel_transformer import sinusoids
from ualm_tk.scoring.models.backbone import ConvTransformerBackbone, masked_softmax_pool
from ualm_tk.scoring.models.corpus import Clip
from ualm_tk.scoring.models.frontend import LogMel
from ualm_tk.scoring.models.trainable import TrainableScorer

logger = logging.getLogger(__name__)
SPECIALS = ["<pad>", "<unk>"]
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> List[str]:
    return _WORD.findall(text.lower())


class ClapMini(TrainableScorer):
    @typechecked
    def __init__(self, vocab: Optional[List[str]] = None, sample_rate: int = 16000, n_mels: int = 64,
                 channels: List[int] = [96, 96], strides: List[int] = [2, 2], mel_pool: int = 2, d_model: int = 96,
                 stem_channels: List[int] = [], level_norm: str = "none",
                 num_layers: int = 1,
                 num_heads: int = 4, ffn_dim: int = 192, dropout: float = 0.1, embed_dim: int = 128,
                 text_d_model: int = 128, text_layers: int = 2, text_heads: int = 4, text_ffn_dim: int = 256,
                 max_text_len: int = 48, init_temperature: float = 0.07):
        super().__init__()
        if not vocab:
            raise ValueError("clap_mini: vocab is empty (scorer_train builds it from the training captions)")
        if vocab[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"clap_mini: vocab must start with {SPECIALS}")
        self.conf = dict(vocab=list(vocab), sample_rate=sample_rate, n_mels=n_mels, channels=list(channels),
                         strides=list(strides), mel_pool=mel_pool,
                         stem_channels=list(stem_channels), level_norm=level_norm,
                         d_model=d_model, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim,
                         dropout=dropout, embed_dim=embed_dim, text_d_model=text_d_model,
                         text_layers=text_layers, text_heads=text_heads, text_ffn_dim=text_ffn_dim,
                         max_text_len=max_text_len, init_temperature=init_temperature)
        self.word_index = {w: i for i, w in enumerate(vocab)}
        self.max_text_len = max_text_len
        self.frontend = LogMel(sample_rate, n_mels, level_norm)
        self.backbone = ConvTransformerBackbone(n_mels, channels, strides, d_model, num_layers, num_heads,
                                                ffn_dim, dropout, mel_pool, stem_channels)
        self.audio_att = torch.nn.Linear(d_model, 1)
        self.audio_proj = torch.nn.Linear(d_model, embed_dim)
        self.tok_emb = torch.nn.Embedding(len(vocab), text_d_model, padding_idx=PAD)
        layer = torch.nn.TransformerEncoderLayer(text_d_model, text_heads, text_ffn_dim, dropout,
                                                 activation="gelu", batch_first=True, norm_first=True)
        self.text_encoder = torch.nn.TransformerEncoder(layer, text_layers, enable_nested_tensor=False)
        self.text_norm = torch.nn.LayerNorm(text_d_model)
        self.text_proj = torch.nn.Linear(text_d_model, embed_dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @classmethod
    def conf_from_data(cls, conf: Dict[str, Any], clips: Sequence[Clip]) -> Dict[str, Any]:
        out = dict(conf)
        if not out.get("vocab"):
            missing = [c.utt for c in clips if not c.caption]
            if missing:
                raise ValueError(f"clap_mini: {len(missing)} training clips have no caption (first: {missing[0]})")
            counts = collections.Counter(w for c in clips for w in words(c.caption))
            out["vocab"] = SPECIALS + sorted(counts)
            logger.info("clap_mini: vocabulary of %d words from %d captions", len(counts), len(clips))
        return out

    # ---- text ----------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """-> ids ``[B, S]`` (PAD = 0), at most ``max_text_len`` words, at least one token."""
        rows = [[self.word_index.get(w, UNK) for w in words(t)][: self.max_text_len] or [UNK] for t in texts]
        ids = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids.to(self.tok_emb.weight.device)

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """-> unit-norm ``[B, E]``."""
        ids = self.tokenize(texts)  # [B, S]
        keep = ids != PAD
        x = self.tok_emb(ids) + sinusoids(ids.shape[1], self.tok_emb.embedding_dim, ids.device)[None]
        x = self.text_norm(self.text_encoder(x, src_key_padding_mask=~keep))  # [B, S, Dt]
        pooled = (x * keep[:, :, None]).sum(1) / keep.sum(1, keepdim=True)
        return F.normalize(self.text_proj(pooled), dim=-1)

    # ---- audio ---------------------------------------------------------------------------
    def audio_embeddings(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``feats [B, n_mels, N]`` -> unit-norm ``[B, E]``."""
        h, keep = self.backbone(feats, lengths)
        pooled = masked_softmax_pool(self.audio_att(h), h, keep)  # [B, D]
        return F.normalize(self.audio_proj(pooled), dim=-1)

    def loss(self, feats, lengths, clips):
        a = self.audio_embeddings(feats, lengths)  # [B, E]
        t = self.text_embeddings([c.caption for c in clips])  # [B, E]
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * t @ a.T  # [B(text), B(audio)]
        same = torch.tensor([[ci.caption == cj.caption for cj in clips] for ci in clips],
                            dtype=logits.dtype, device=logits.device)
        target = same / same.sum(1, keepdim=True)
        loss_t2a = -(target * logits.log_softmax(1)).sum(1).mean()
        loss_a2t = -(target * logits.T.log_softmax(1)).sum(1).mean()
        loss = 0.5 * (loss_t2a + loss_a2t)
        with torch.no_grad():
            r1 = same[torch.arange(len(clips)), logits.argmax(1)].mean()
        return loss, dict(loss=loss.item(), temperature=float(1.0 / scale.item()), batch_t2a_r1=r1.item())

    # ---- scorer interface -----------------------------------------------------------------
    @torch.no_grad()
    def embed_audio(self, wav, sr: int) -> np.ndarray:
        feats, lengths = self.features(wav, sr)
        return self.audio_embeddings(feats, lengths)[0].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def embed_text(self, text: str) -> np.ndarray:
        return self.text_embeddings([text])[0].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_embeddings(list(texts)).cpu().numpy().astype(np.float32)

    def embed(self, wav, sr: int) -> np.ndarray:
        return self.embed_audio(wav, sr)
