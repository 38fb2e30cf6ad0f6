"""``mel_transformer``: our own small audio encoder (trainable on CPU; frozen on request).

log-mel (torchaudio; 25 ms window, 10 ms hop, 80 bins, Whisper-style log10 / dynamic-range
clamp / scaling) -> two Conv1d (kernel 3, stride 2) + GELU = x4 subsampling (100 -> 25 frames/s)
-> sinusoidal positions -> pre-norm transformer blocks (SDPA, key-padding mask from the lengths)
-> final LayerNorm -> ``feats [B, T', D]``.

Frame ``j`` of the output covers samples ``[640 j, 640 (j+1))`` at 16 kHz, so a clip of ``L``
samples gives exactly ``ceil(L / 640) = ceil(L * 25 / 16000)`` frames. Every stage is computed on
a zero-padded waveform of ``640 T'`` samples and masked per row (mel max, conv inputs, attention
keys), so a clip's features do not depend on the other clips of its batch.

Sizes (``size`` preset, any field overridable in ``audio_encoder_conf``): ``tiny`` (~0.1 M,
tests), ``mini`` (~1.3 M, the CPU recipe), ``base`` (~19 M).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
import torchaudio
from typeguard import typechecked

from ualm_tk.audio_encoder.abs_audio_encoder import AbsAudioEncoder

logger = logging.getLogger(__name__)

PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(d_model=64, num_layers=2, num_heads=4, ffn_dim=128),
    "mini": dict(d_model=128, num_layers=6, num_heads=4, ffn_dim=512),
    "base": dict(d_model=512, num_layers=6, num_heads=8, ffn_dim=2048),
}
SUBSAMPLING = 4  # 100 mel frames/s -> 25 output frames/s
MEL_RATE = 100  # mel frames per second (10 ms hop)


def sinusoids(length: int, channels: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal position table ``[length, channels]`` (sin half, cos half)."""
    half = channels // 2
    inv = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))
    t = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    table = torch.cat([t.sin(), t.cos()], dim=1)
    if table.shape[1] < channels:  # odd width
        table = F.pad(table, (0, channels - table.shape[1]))
    return table.to(dtype)


class PreNormBlock(torch.nn.Module):
    """``x + MHA(LN(x))``, then ``x + FFN(LN(x))``; ``x [B, T, D]``, ``keep [B, T]`` (True = real frame)."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.proj = torch.nn.Linear(d_model, d_model)
        self.norm2 = torch.nn.LayerNorm(d_model)
        self.ffn = torch.nn.Sequential(
            torch.nn.Linear(d_model, ffn_dim), torch.nn.GELU(), torch.nn.Dropout(dropout), torch.nn.Linear(ffn_dim, d_model)
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.num_heads
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 x [B,H,T,hd]
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=self.attn_dropout if self.training else 0.0
        )  # [B,H,T,hd]
        x = x + self.dropout(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class MelTransformerEncoder(AbsAudioEncoder):
    """log-mel -> conv x4 subsampling -> pre-norm transformer, at 25 frames/s."""

    @typechecked
    def __init__(
        self,
        size: str = "tiny",
        d_model: Optional[int] = None,
        num_layers: Optional[int] = None,
        num_heads: Optional[int] = None,
        ffn_dim: Optional[int] = None,
        n_mels: int = 80,
        sample_rate: int = 16000,
        dropout: float = 0.1,
        freeze: bool = False,
    ):
        super().__init__()
        if size not in PRESETS:
            raise ValueError(f"mel_transformer: unknown size {size!r}; choose one of {sorted(PRESETS)}")
        dims = dict(PRESETS[size])
        for k, v in dict(d_model=d_model, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim).items():
            if v is not None:
                dims[k] = v
        if any(v < 1 for v in dims.values()):
            raise ValueError(f"mel_transformer: sizes must be positive, got {dims}")
        if dims["d_model"] % dims["num_heads"]:
            raise ValueError(
                f"mel_transformer: d_model {dims['d_model']} is not divisible by num_heads {dims['num_heads']}"
            )
        if sample_rate % MEL_RATE:
            raise ValueError(f"mel_transformer: sample_rate {sample_rate} must be a multiple of {MEL_RATE} Hz")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mel_transformer: dropout must be in [0, 1), got {dropout}")
        self.conf = dict(size=size, n_mels=n_mels, sample_rate=sample_rate, dropout=dropout, freeze=freeze, **dims)
        self._sample_rate = sample_rate
        self.hop = sample_rate // MEL_RATE  # 160 at 16 kHz
        self.d_model = dims["d_model"]
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=int(round(0.025 * sample_rate)),
            hop_length=self.hop,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",  # zeros past the clip, as in a padded batch
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )
        self.conv1 = torch.nn.Conv1d(n_mels, self.d_model, kernel_size=3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv1d(self.d_model, self.d_model, kernel_size=3, stride=2, padding=1)
        self.dropout = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList(
            PreNormBlock(self.d_model, dims["num_heads"], dims["ffn_dim"], dropout) for _ in range(dims["num_layers"])
        )
        self.norm = torch.nn.LayerNorm(self.d_model)
        logger.info(
            "mel_transformer %s: %.2f M parameters, %d layers, width %d",
            size, sum(p.numel() for p in self.parameters()) / 1e6, dims["num_layers"], self.d_model,
        )
        if freeze:
            self.freeze()

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_rate(self) -> float:
        return float(MEL_RATE // SUBSAMPLING)

    @property
    def output_size(self) -> int:
        return self.d_model

    @staticmethod
    def _mask(n: int, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, n]`` True where the position index is below the row's length."""
        return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]

    def log_mel(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """``wav [B,1,L]`` -> normalised log-mel ``[B, n_mels, 4 T']`` (zeros past each row's ``4 feat_lengths``).

        Whisper's normalisation: ``log10``, clamp to (row maximum - 8), ``(x + 4) / 4``; the row
        maximum is taken over the row's own frames only.
        """
        num_mel = SUBSAMPLING * int(feat_lengths.max())
        n_samples = num_mel * self.hop
        x = wav[:, 0, :n_samples]
        if x.shape[1] < n_samples:
            x = F.pad(x, (0, n_samples - x.shape[1]))
        x = x * self._mask(n_samples, lengths).to(x.dtype)  # [B, n_samples], zero past each clip
        with torch.autocast(device_type=x.device.type, enabled=False):
            mel = self.mel(x.float())[:, :, :num_mel]  # [B, n_mels, 4T']
        logmel = torch.clamp(mel, min=1e-10).log10()
        keep = self._mask(num_mel, SUBSAMPLING * feat_lengths)[:, None, :]  # [B, 1, 4T']
        peak = logmel.masked_fill(~keep, float("-inf")).amax(dim=(1, 2), keepdim=True)  # [B, 1, 1]
        logmel = (torch.maximum(logmel, peak - 8.0) + 4.0) / 4.0
        return logmel.masked_fill(~keep, 0.0).to(self.conv1.weight.dtype)

    @property
    def num_hidden_layers(self) -> int:
        return len(self.blocks) + 1  # the subsampled input, then every block

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        return self._run(wav, lengths, feat_lengths, keep_layers=False)

    def _encode_layers(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        return self._run(wav, lengths, feat_lengths, keep_layers=True)

    def _run(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor, keep_layers: bool) -> torch.Tensor:
        """``feats [B, T, D]``, or with ``keep_layers`` ``[L+1, B, T, D]``: the input of block 1 and the
        output of every block, each layer-normalised (without affine weights, so the layers share one
        scale; the last one through the final LayerNorm, i.e. ``feats``); zeros past each row."""
        T = int(feat_lengths.max())
        m4 = self._mask(SUBSAMPLING * T, SUBSAMPLING * feat_lengths)  # [B, 4T]
        m2 = self._mask(2 * T, 2 * feat_lengths)  # [B, 2T]
        m1 = self._mask(T, feat_lengths)  # [B, T]
        x = self.log_mel(wav, lengths, feat_lengths)  # [B, n_mels, 4T]
        x = F.gelu(self.conv1(x * m4[:, None, :]))  # [B, D, 2T]
        x = F.gelu(self.conv2(x * m2[:, None, :]))  # [B, D, T]
        x = x.transpose(1, 2) + sinusoids(T, self.d_model, x.device, x.dtype)[None]  # [B, T, D]
        x = self.dropout(x)
        layers = []
        for block in self.blocks:
            if keep_layers:
                layers.append(F.layer_norm(x, x.shape[-1:]))
            x = block(x, m1)
        x = self.norm(x)
        keep = m1[:, :, None].to(x.dtype)
        if not keep_layers:
            return x * keep  # [B, T, D], zeros past each row
        return torch.stack(layers + [x], dim=0) * keep  # [L+1, B, T, D]
