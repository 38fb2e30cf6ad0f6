"""Small log-mel audio backbone of the toolkit's own scorers (tagger, clap_mini); cheap on 2 CPU cores.

``feats [B, n_mels, N]`` (100 frames/s) -> optional average pooling over time by ``mel_pool`` ->
optional 2-D conv stem over (mel, time) (``stem_channels``; each block: 3x3 conv with stride 2 in
both axes, BatchNorm, GELU; its filters see a local pattern the same way at any pitch, which a
Conv1d with mel bins as channels does not — but its output ``[B, C, M', N']`` is flattened to
``C M'`` channels, so the model as a whole is not pitch-invariant: on the mini corpus, tones of a
waveform at a frequency never seen with that waveform in training are still missed) -> strided Conv1d blocks over time
(mel bins, or the stem's flattened maps, as input channels; each block: conv k=3, BatchNorm, GELU;
e.g. mel_pool 2 + strides 2,2 -> 12.5 frames/s; mel_pool 2 + a 2-block stem + strides 1 -> 12.5) ->
sinusoidal positions -> pre-norm transformer (key-padding mask) -> LayerNorm -> ``h [B, T, D]``.
Frame ``t`` covers log-mel frames ``[S t, S (t+1))`` (``S`` = mel_pool x 2^len(stem_channels) x
product of strides), i.e.
seconds ``[t, t+1) / frame_rate``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ualm_tk.audio_encoder.mel_transformer import sinusoids
from ualm_tk.scoring.models.frontend import MEL_RATE


class ConvBlock1d(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = torch.nn.Conv1d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, cin, N] -> [B, cout, N / stride]
        return F.gelu(self.bn(self.conv(x)))


class ConvBlock2d(torch.nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, cin, M, N] -> [B, cout, M / 2, N / 2]
        return F.gelu(self.bn(self.conv(x)))


class ConvTransformerBackbone(torch.nn.Module):
    def __init__(self, n_mels: int = 64, channels: Sequence[int] = (128, 128, 128),
                 strides: Sequence[int] = (2, 2, 2), d_model: int = 128, num_layers: int = 1,
                 num_heads: int = 4, ffn_dim: int = 256, dropout: float = 0.1, mel_pool: int = 1,
                 stem_channels: Sequence[int] = ()):
        super().__init__()
        if mel_pool < 1:
            raise ValueError(f"mel_pool must be >= 1, got {mel_pool}")
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"channels {list(channels)} and strides {list(strides)} must have the same length")
        if any(s < 1 for s in strides):
            raise ValueError(f"strides must be >= 1, got {list(strides)}")
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        stem_in = [1] + list(stem_channels[:-1])
        self.stem = torch.nn.ModuleList(ConvBlock2d(ci, co) for ci, co in zip(stem_in, stem_channels))
        m = n_mels
        for _ in stem_channels:
            m = (m + 1) // 2
        cins = [stem_channels[-1] * m if stem_channels else n_mels] + list(channels[:-1])
        self.convs = torch.nn.ModuleList(ConvBlock1d(ci, co, s) for ci, co, s in zip(cins, channels, strides))
        self.proj = torch.nn.Linear(channels[-1], d_model)
        layer = torch.nn.TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(d_model)
        self.dropout = torch.nn.Dropout(dropout)
        self.d_model = d_model
        self.mel_pool = mel_pool
        self.stride = mel_pool * 2 ** len(stem_channels)
        for s in strides:
            self.stride *= s

    @property
    def frame_rate(self) -> float:
        return MEL_RATE / self.stride

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + self.stride - 1) // self.stride

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, M, N]``, ``lengths [B]`` -> ``h [B, T, D]``, ``keep [B, T]`` (True = real frame)."""
        N = feats.shape[2]
        T = -(-N // self.stride)
        x = F.pad(feats, (0, T * self.stride - N))
        x = x * (torch.arange(x.shape[2], device=x.device)[None] < lengths[:, None])[:, None, :].to(x.dtype)
        if self.mel_pool > 1:
            x = F.avg_pool1d(x, self.mel_pool)  # [B, M, N / mel_pool]
        if len(self.stem):
            x = x[:, None]  # [B, 1, M, N']
            for blk in self.stem:
                x = blk(x)  # -> [B, C, M / 2, N' / 2]
            x = x.flatten(1, 2)  # [B, C M', N'']
        for blk in self.convs:
            x = blk(x)  # -> [B, C, T]
        x = x[:, :, :T].transpose(1, 2)  # [B, T, C]
        keep = torch.arange(T, device=x.device)[None] < self.frame_lengths(lengths)[:, None]  # [B, T]
        x = self.proj(x) + sinusoids(T, self.d_model, x.device, x.dtype)[None]
        x = self.transformer(self.dropout(x), src_key_padding_mask=~keep)
        return self.norm(x) * keep[:, :, None].to(x.dtype), keep


def masked_softmax_pool(scores: torch.Tensor, values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Attention pooling over time: ``scores [B,T,H]``, ``values [B,T,H']`` (H' = H or broadcast) -> ``[B,H']``."""
    w = scores.masked_fill(~keep[:, :, None], float("-inf")).softmax(dim=1)  # [B, T, H]
    return (w * values).sum(dim=1)
