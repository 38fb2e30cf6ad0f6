"""``mini_rvq``: a small convolutional RVQ codec that trains on CPU in minutes.

16 kHz mono, hop 320 (strides 2*4*5*8) -> 50 frames/s like the paper's X-Codec. Encoder:
conv -> 4 x (residual unit, strided conv) -> conv to ``latent_dim``; decoder mirrors it with
transposed convolutions; a :class:`ResidualVectorQuantizer` sits between them.

Default K=8 codebooks x 256 entries = 3.2 kbit/s: eight streams like the paper (so the LM's
delay pattern is the same), while 256 entries per stream keep the LM's audio vocabulary at
2,048 rows (cheap embeddings and heads on CPU) and let a small corpus use most entries.

Shapes: ``wav [B, 1, L]`` -> ``z [B, D, T]`` -> ``codes [B, K, T]``, ``T = ceil(L / 320)``;
``decode`` returns ``wav [B, 1, T * 320]``.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from typeguard import typechecked

from ualm_tk.codec.abs_codec import AbsCodec
from ualm_tk.codec.rvq import ResidualVectorQuantizer


class ResidualUnit(torch.nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.conv2 = torch.nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C, L]
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


def residual_stack(channels: int, num_units: int) -> torch.nn.Sequential:
    """``num_units`` residual units with dilations 1, 3, 9, ..."""
    return torch.nn.Sequential(*(ResidualUnit(channels, 3 ** i) for i in range(num_units)))


class EncoderBlock(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, res_units: int):
        super().__init__()
        self.res = residual_stack(c_in, res_units)
        self.down = torch.nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C', L / stride]
        return self.down(F.elu(self.res(x)))


class DecoderBlock(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, res_units: int):
        super().__init__()
        self.up = torch.nn.ConvTranspose1d(
            c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2), output_padding=stride % 2
        )
        self.res = residual_stack(c_out, res_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C', T * stride]
        return self.res(self.up(F.elu(x)))


class MiniRVQCodec(AbsCodec):
    """Conv encoder/decoder + EMA residual VQ (see module docstring)."""

    @typechecked
    def __init__(
        self,
        sample_rate: int = 16000,
        strides: Sequence[int] = (2, 4, 5, 8),
        channels: Sequence[int] = (16, 32, 64, 128),
        latent_dim: int = 64,
        res_units: int = 1,
        num_codebooks: int = 8,
        codebook_size: int = 256,
        ema_decay: float = 0.99,
        kmeans_iters: int = 10,
        dead_ratio: float = 0.05,
        quantizer_dropout: float = 0.5,
        seed: int = 0,
    ):
        super().__init__()
        if len(strides) != len(channels):
            raise ValueError(f"strides {list(strides)} and channels {list(channels)} differ in length")
        self.conf = dict(
            sample_rate=sample_rate, strides=list(strides), channels=list(channels),
            latent_dim=latent_dim, res_units=res_units, num_codebooks=num_codebooks, codebook_size=codebook_size,
            ema_decay=ema_decay, kmeans_iters=kmeans_iters, dead_ratio=dead_ratio,
            quantizer_dropout=quantizer_dropout, seed=seed,
        )
        self._sample_rate = sample_rate
        self._hop = int(math.prod(strides))
        ch = list(channels)
        enc = [torch.nn.Conv1d(1, ch[0], 7, padding=3)]
        for i, s in enumerate(strides):
            c_out = ch[i + 1] if i + 1 < len(ch) else ch[-1]
            enc.append(EncoderBlock(ch[i], c_out, s, res_units))
        enc += [torch.nn.ELU(), torch.nn.Conv1d(ch[-1], latent_dim, 3, padding=1)]
        self.encoder = torch.nn.Sequential(*enc)
        dec = [torch.nn.Conv1d(latent_dim, ch[-1], 7, padding=3)]
        rch = ch[::-1]
        for i, s in enumerate(reversed(list(strides))):
            c_out = rch[i + 1] if i + 1 < len(rch) else rch[-1]
            dec.append(DecoderBlock(rch[i], c_out, s, res_units))
        dec += [torch.nn.ELU(), torch.nn.Conv1d(rch[-1], 1, 7, padding=3), torch.nn.Tanh()]
        self.decoder = torch.nn.Sequential(*dec)
        self._init_weights()
        self.quantizer = ResidualVectorQuantizer(
            latent_dim, num_codebooks, codebook_size, decay=ema_decay, kmeans_iters=kmeans_iters,
            dead_ratio=dead_ratio, dropout_prob=quantizer_dropout, seed=seed,
        )

    def _init_weights(self) -> None:
        """Variance-preserving (Kaiming, linear gain) init: PyTorch's default shrinks the signal
        layer by layer so much that the output starts near zero and learning stalls."""
        for mod in self.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="linear")
                torch.nn.init.zeros_(mod.bias)

    # properties
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_rate(self) -> float:
        return self._sample_rate / self._hop

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def hop_length(self) -> int:
        return self._hop

    # internals
    def forward_train(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``wav [B, 1, L]`` -> (``wav_hat [B, 1, L_pad]``, ``codes [B, n_q, T]``, commitment loss)."""
        z = self.encoder(self.pad_to_hop(wav))  # [B, D, T]
        z_q, codes, commit = self.quantizer(z)
        return self.decoder(z_q), codes, commit

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self.pad_to_hop(wav))  # [B, D, T]
        return self.quantizer.encode(z)  # [B, K, T]

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.decode(codes))  # [B, 1, T * hop]
