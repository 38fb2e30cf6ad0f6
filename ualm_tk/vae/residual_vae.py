"""Residual enhancement VAE: resampled input + a learned signal decoded from a latent.

Encoder: strided 1-D convolutions over the low-rate waveform, one latent frame per
``hop_in = prod(encoder_strides)`` input samples, giving a Gaussian posterior over
``latent_dim`` channels. Decoder (Vocos-style, cheap on CPU because it runs at frame rate):
ConvNeXt blocks over the latent, a linear head predicting log-magnitude and phase of an
STFT at the output rate (hop ``hop_out = hop_in * out / in``), and an inverse STFT. The
output is the input resampled to the output rate (windowed sinc, as :mod:`ualm_tk.audio.resample`)
plus that learned signal, so an untrained model already equals plain resampling and training
only has to add what resampling cannot: the missing high band and the codec's errors.
With ``level_conditioning`` (default) the predicted log magnitudes are offsets from the input's
log frame level, so silent input stays silent and the decoder learns a relative spectral envelope.

Channels: ``channels=1`` predicts one residual. ``channels=2`` works in mid/side: the first
decoded signal is added to the resampled input (mid), the second is the side signal, and the
output is ``L = mid + side``, ``R = mid - side``. Mono masters are trained as L = R (side 0),
so the model learns stereo width only from stereo masters and stays centred otherwise.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from typeguard import typechecked

from ualm_tk.audio.resample import KAISER_BEST
from ualm_tk.vae.abs_vae import AbsVAE


class _ResidualUnit(torch.nn.Module):
    def __init__(self, ch: int, dilation: int):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(ch, ch, 7, dilation=dilation, padding=3 * dilation)
        self.conv2 = torch.nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, ch, L]
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


class _DownBlock(torch.nn.Module):
    """Residual units then a strided conv: [B, cin, L] -> [B, cout, L / stride]."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.units = torch.nn.Sequential(_ResidualUnit(cin, 1), _ResidualUnit(cin, 3))
        self.stride = stride
        self.down = torch.nn.Conv1d(cin, cout, 2 * stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.units(x))
        # pad by one stride in total so that L (a multiple of stride) -> exactly L / stride
        x = F.pad(x, (self.stride // 2, self.stride - self.stride // 2))
        return self.down(x)


class _ConvNeXtBlock(torch.nn.Module):
    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = torch.nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.pw1 = torch.nn.Linear(dim, 3 * dim)
        self.pw2 = torch.nn.Linear(3 * dim, dim)
        self.gamma = torch.nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, dim, T]
        y = self.dwconv(x).transpose(1, 2)  # [B, T, dim]
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ResidualEnhancementVAE(AbsVAE):
    """Waveform VAE: 16 kHz mono in, 48 kHz mono or stereo out (resampled input + decoded residual)."""

    @typechecked
    def __init__(
        self,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 48000,
        channels: int = 1,
        latent_dim: int = 16,
        encoder_channels: Sequence[int] = (32, 64, 128),
        encoder_strides: Sequence[int] = (4, 4, 5),
        decoder_dim: int = 128,
        decoder_layers: int = 4,
        n_fft_factor: int = 4,
        max_log_magnitude: float = 4.0,
        init_log_magnitude: Optional[float] = None,
        level_conditioning: bool = True,
    ):
        super().__init__()
        if input_sample_rate <= 0 or output_sample_rate < input_sample_rate:
            raise ValueError(
                f"need 0 < input_sample_rate <= output_sample_rate, got {input_sample_rate} -> "
                f"{output_sample_rate}"
            )
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels}")
        if len(encoder_channels) != len(encoder_strides) or not encoder_strides:
            raise ValueError("encoder_channels and encoder_strides must be non-empty and of equal length")
        self._in_sr = input_sample_rate
        self._out_sr = output_sample_rate
        self._channels = channels
        self.latent_dim = latent_dim
        self.hop_in = int(math.prod(encoder_strides))
        hop_out = self.hop_in * output_sample_rate / input_sample_rate
        if hop_out != int(hop_out):
            raise ValueError(
                f"hop {self.hop_in} at {input_sample_rate} Hz is not a whole number of samples at "
                f"{output_sample_rate} Hz; change encoder_strides"
            )
        self.hop_out = int(hop_out)
        self.n_fft = n_fft_factor * self.hop_out
        self.n_bins = self.n_fft // 2 + 1
        self.max_log_magnitude = max_log_magnitude
        self.level_conditioning = level_conditioning

        # encoder: wav_lo [B,1,T*hop_in] -> h [B, encoder_channels[-1], T]
        layers: List[torch.nn.Module] = [torch.nn.Conv1d(1, encoder_channels[0], 7, padding=3)]
        cin = encoder_channels[0]
        for i, stride in enumerate(encoder_strides):
            cout = encoder_channels[min(i + 1, len(encoder_channels) - 1)]
            layers.append(_DownBlock(cin, cout, stride))
            cin = cout
        self.encoder = torch.nn.Sequential(*layers)
        self.to_posterior = torch.nn.Conv1d(cin, 2 * latent_dim, 3, padding=1)

        # decoder: z [B, D, T] -> STFT frames [B, T, C * 2 * n_bins]
        self.dec_in = torch.nn.Conv1d(latent_dim, decoder_dim, 7, padding=3)
        self.dec_blocks = torch.nn.Sequential(
            *[_ConvNeXtBlock(decoder_dim, 1.0 / max(decoder_layers, 1)) for _ in range(decoder_layers)]
        )
        self.dec_norm = torch.nn.LayerNorm(decoder_dim)
        self.head = torch.nn.Linear(decoder_dim, channels * 2 * self.n_bins)
        with torch.no_grad():  # start close to "plain resampling": a near-silent residual
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            if init_log_magnitude is None:  # about -45 dB relative to the input, or -60 dBFS
                init_log_magnitude = -2.0 if level_conditioning else -4.0
            self.head.bias.view(channels, 2, self.n_bins)[:, 0].fill_(init_log_magnitude)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def input_sample_rate(self) -> int:
        return self._in_sr

    @property
    def output_sample_rate(self) -> int:
        return self._out_sr

    @property
    def channels(self) -> int:
        return self._channels

    def num_frames(self, input_length: int) -> int:
        return -(-input_length // self.hop_in)

    def encode(self, wav_lo: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # wav_lo [B,1,L] -> mean, logvar [B, D, T], T = ceil(L / hop_in)
        n = self.num_frames(wav_lo.shape[-1])
        x = F.pad(wav_lo, (0, n * self.hop_in - wav_lo.shape[-1]))
        stats = self.to_posterior(F.elu(self.encoder(x)))  # [B, 2D, T]
        mean, logvar = stats.chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)

    def upsample(self, wav_lo: torch.Tensor) -> torch.Tensor:
        """Plain windowed-sinc resampling: ``[B,1,L]`` -> ``[B,1,output_length(L)]``."""
        y = AF.resample(wav_lo, self._in_sr, self._out_sr, **KAISER_BEST)
        return y[..., : self.output_length(wav_lo.shape[-1])]

    def input_log_level(self, wav_lo: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Log RMS of ``wav_lo [B,1,L]`` in windows of 4 hops centred on each frame -> ``[B,1,T]``."""
        power = F.pad(wav_lo, (0, num_frames * self.hop_in - wav_lo.shape[-1])).pow(2)
        power = F.pad(power, (2 * self.hop_in, 2 * self.hop_in))
        rms = F.avg_pool1d(power, 4 * self.hop_in, stride=self.hop_in)[..., :num_frames].sqrt()
        return torch.log(rms + 1e-5)

    def decode_residual(self, z: torch.Tensor, wav_lo: Optional[torch.Tensor] = None) -> torch.Tensor:
        # z [B, D, T] -> residual [B, C, T * hop_out]; with level conditioning the predicted
        # log magnitudes are relative to the input's frame level (silence in -> silence out)
        b, _, t = z.shape
        h = self.dec_blocks(self.dec_in(z))  # [B, H, T]
        frames = self.head(self.dec_norm(h.transpose(1, 2)))  # [B, T, C*2*F]
        frames = frames.view(b, t, self._channels, 2, self.n_bins).permute(0, 2, 3, 4, 1)
        logmag, phase = frames[:, :, 0], frames[:, :, 1]  # [B, C, F, T] each
        if self.level_conditioning:
            if wav_lo is None:
                raise ValueError("decode_residual needs wav_lo when level_conditioning is on")
            logmag = logmag + self.input_log_level(wav_lo, t).unsqueeze(2)  # [B,1,1,T]
        mag = torch.exp(logmag.clamp(max=self.max_log_magnitude))
        spec = torch.polar(mag, phase).reshape(b * self._channels, self.n_bins, t)
        wav = torch.istft(
            spec, self.n_fft, self.hop_out, window=self.window, center=True, length=t * self.hop_out
        )  # [B*C, T*hop_out]
        return wav.view(b, self._channels, -1)

    def decode(self, z: torch.Tensor, wav_lo: torch.Tensor) -> torch.Tensor:
        # z [B, D, T], wav_lo [B,1,L] -> wav_hi [B, C, L * out / in]
        base = self.upsample(wav_lo)  # [B, 1, L']
        res = self.decode_residual(z, wav_lo)[..., : base.shape[-1]]  # [B, C, L']
        if res.shape[-1] < base.shape[-1]:
            res = F.pad(res, (0, base.shape[-1] - res.shape[-1]))
        mid = base + res[:, :1]
        if self._channels == 1:
            return mid
        side = res[:, 1:2]
        return torch.cat([mid + side, mid - side], dim=1)

    def forward(self, wav_lo: torch.Tensor, sample: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``wav_lo [B,1,L]`` -> ``(wav_hi [B,C,L'], kl)`` with z sampled if ``sample``."""
        mean, logvar = self.encode(wav_lo)
        z = self.reparameterize(mean, logvar) if sample else mean
        return self.decode(z, wav_lo), self.kl_divergence(mean, logvar)
