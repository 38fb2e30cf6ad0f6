"""Training loss for waveform enhancement: multi-resolution STFT (spectral convergence + log magnitude).

(ESPnet ships mel, adversarial and feature-matching losses, used as they are by
:mod:`ualm_tk.vae.espnet_model`, but no multi-resolution STFT loss; this is the standard one of
Yamamoto et al., 2020, Parallel WaveGAN.)
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from typeguard import typechecked


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Mean over resolutions of ||S - S_hat||_F / ||S||_F + mean |log S - log S_hat|."""

    @typechecked
    def __init__(
        self,
        fft_sizes: Sequence[int] = (256, 512, 1024, 2048),
        hop_sizes: Sequence[int] = (64, 128, 256, 512),
        eps: float = 1e-7,
    ):
        super().__init__()
        if len(fft_sizes) != len(hop_sizes) or not fft_sizes:
            raise ValueError("fft_sizes and hop_sizes must be non-empty and of equal length")
        self.resolutions = list(zip(fft_sizes, hop_sizes))
        self.eps = eps
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"win{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _mag(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        # x [N, L] -> |X| [N, F, T]
        win = getattr(self, f"win{n_fft}")
        spec = torch.stft(x, n_fft, hop, window=win, center=True, return_complex=True)
        return (spec.real.pow(2) + spec.imag.pow(2)).clamp_min(self.eps).sqrt()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``y_hat, y [B, C, L]`` -> (spectral convergence, log-magnitude L1), each averaged."""
        y_hat = y_hat.reshape(-1, y_hat.shape[-1])
        y = y.reshape(-1, y.shape[-1])
        sc = y.new_zeros(())
        mag = y.new_zeros(())
        for n_fft, hop in self.resolutions:
            m_hat, m = self._mag(y_hat, n_fft, hop), self._mag(y, n_fft, hop)
            sc = sc + torch.linalg.norm(m - m_hat) / torch.linalg.norm(m).clamp_min(self.eps)
            mag = mag + (m.log() - m_hat.log()).abs().mean()
        n = len(self.resolutions)
        return sc / n, mag / n
