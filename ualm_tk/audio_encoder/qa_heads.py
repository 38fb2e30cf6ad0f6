"""Question heads over encoder frames: one learned attention query per categorical question type.

Stage 5a (:mod:`ualm_tk.audio_encoder.qa_pretrain`) trains them beside the encoder; the
``mel_transformer_qa`` encoder (:mod:`ualm_tk.audio_encoder.qa_readout`) keeps them and hands their
answers to the LM.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch


class QAHeads(torch.nn.Module):
    """Per question type: a multi-head attention query over frames, then an MLP to its answers.

    ``feats [B,T,D]``, ``keep [B,T]`` (True = real frame) -> list over types of ``logits [B, A_q]``.
    """

    def __init__(self, d_model: int, num_answers: Sequence[int], num_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        Q = len(num_answers)
        self.num_heads = num_heads
        self.key = torch.nn.Linear(d_model, d_model)
        self.query = torch.nn.Parameter(torch.randn(Q, d_model) * d_model ** -0.5)  # [Q, D]
        self.norm = torch.nn.LayerNorm(d_model)
        self.hidden = torch.nn.Sequential(torch.nn.Linear(d_model, d_model), torch.nn.GELU(), torch.nn.Dropout(dropout))
        self.out = torch.nn.ModuleList(torch.nn.Linear(d_model, a) for a in num_answers)

    def forward(self, feats: torch.Tensor, keep: torch.Tensor) -> List[torch.Tensor]:
        B, T, D = feats.shape
        H, Q = self.num_heads, self.query.shape[0]
        k = self.key(feats).view(B, T, H, D // H)  # [B,T,H,dh]
        v = feats.view(B, T, H, D // H)  # [B,T,H,dh]
        q = self.query.view(Q, H, D // H)  # [Q,H,dh]
        scores = torch.einsum("qhd,bthd->bqht", q, k) / math.sqrt(D // H)  # [B,Q,H,T]
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        pooled = torch.einsum("bqht,bthd->bqhd", scores.softmax(-1), v).reshape(B, Q, D)  # [B,Q,D]
        h = self.hidden(self.norm(pooled))  # [B,Q,D]
        return [head(h[:, i]) for i, head in enumerate(self.out)]
