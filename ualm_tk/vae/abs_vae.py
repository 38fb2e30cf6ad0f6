"""Abstract interface of an enhancement VAE (the ``vae`` registry).

An enhancement VAE lifts the codec's output (``input_sample_rate``, mono) to the master's
format (``output_sample_rate``, ``channels``) through a latent with a KL term::

    mean, logvar = vae.encode(wav_lo)      # wav_lo [B, 1, L]  -> [B, D, T] each
    wav_hi = vae.decode(z, wav_lo)         # z [B, D, T]       -> [B, C, L * out / in]
    wav_hi = vae.enhance(wav_lo)           # deterministic: decode(mean)

``decode`` takes the low-rate waveform too because an implementation may be residual
(predict the high-rate signal as resampled input + a learned part).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Tuple

import torch


class VAEInputError(ValueError):
    """The waveform given to a VAE has the wrong shape, rate, length or values."""


class AbsVAE(torch.nn.Module, ABC):
    """Enhancement VAE: ``enhance(wav_lo [B,1,L]) -> wav_hi [B,C,L']``."""

    @property
    @abstractmethod
    def input_sample_rate(self) -> int:
        """Sample rate of ``wav_lo`` (the codec's rate)."""

    @property
    @abstractmethod
    def output_sample_rate(self) -> int:
        """Sample rate of the enhanced waveform."""

    @property
    @abstractmethod
    def channels(self) -> int:
        """Channel count C of the enhanced waveform (1 mono, 2 stereo)."""

    @abstractmethod
    def encode(self, wav_lo: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``wav_lo [B,1,L]`` -> posterior ``(mean [B,D,T], logvar [B,D,T])``."""

    @abstractmethod
    def decode(self, z: torch.Tensor, wav_lo: torch.Tensor) -> torch.Tensor:
        """``z [B,D,T]`` (+ ``wav_lo [B,1,L]``) -> ``wav_hi [B,C,output_length(L)]``."""

    def output_length(self, input_length: int) -> int:
        """Number of output samples for ``input_length`` input samples."""
        return input_length * self.output_sample_rate // self.input_sample_rate

    def check_input(self, wav_lo: torch.Tensor, sample_rate: Optional[int] = None) -> None:
        """Raise :class:`VAEInputError` for a wrong rate, shape, empty or non-finite input."""
        if sample_rate is not None and int(sample_rate) != self.input_sample_rate:
            raise VAEInputError(
                f"input sample rate {sample_rate} Hz, but this VAE takes {self.input_sample_rate} Hz "
                f"(resample the input first)"
            )
        if not torch.is_tensor(wav_lo) or wav_lo.dim() != 3 or wav_lo.shape[1] != 1:
            shape = tuple(wav_lo.shape) if torch.is_tensor(wav_lo) else type(wav_lo).__name__
            raise VAEInputError(f"wav_lo must be a mono tensor [B, 1, L], got {shape}")
        if wav_lo.shape[0] == 0 or wav_lo.shape[2] == 0:
            raise VAEInputError(f"empty input: wav_lo has shape {tuple(wav_lo.shape)}")
        if not wav_lo.is_floating_point():
            raise VAEInputError(f"wav_lo must be a float tensor, got {wav_lo.dtype}")
        bad = ~torch.isfinite(wav_lo)
        if bool(bad.any()):
            b, _, i = (int(v) for v in bad.nonzero()[0])
            raise VAEInputError(
                f"wav_lo holds {int(bad.sum())} non-finite samples (NaN/Inf), first in item {b} at "
                f"sample {i} ({i / self.input_sample_rate:.3f} s)"
            )

    @torch.no_grad()
    def enhance(self, wav_lo: torch.Tensor, sample_rate: Optional[int] = None) -> torch.Tensor:
        """Deterministic enhancement: ``wav_lo [B,1,L]`` -> ``wav_hi [B,C,L']`` from the mean."""
        self.check_input(wav_lo, sample_rate)
        mean, _ = self.encode(wav_lo)
        return self.decode(mean, wav_lo)

    @staticmethod
    def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over all elements (0 at the prior)."""
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()

    @staticmethod
    def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Sample ``z = mean + exp(logvar / 2) * eps``."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
