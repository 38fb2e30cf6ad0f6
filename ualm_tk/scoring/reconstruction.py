"""Reconstruction metrics between a reference waveform and an estimate (codec, VAE).

All functions take waveforms ``[C, L]`` or ``[L]`` (numpy or torch, any float dtype), compare
them at one sample rate, truncate both to the shorter length, and average over channels. The
estimate must have the reference's channel count (or one channel, which is broadcast).

| metric | definition | direction |
|---|---|---|
| ``si_sdr`` | scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals | higher is better |
| ``mel_distance`` | mean L1 between natural-log mel magnitudes (80 bands, 64 ms window, 16 ms hop) | lower is better |
| ``multires_stft_distance`` | mean over 3 STFT resolutions of spectral convergence + L1 log magnitude | lower is better |
| ``log_spectral_distance`` | LSD in dB over bins in [fmin, fmax]: frame mean of the RMS dB difference | lower is better |
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
EPS = 1e-8


def _as_pair(ref: ArrayLike, est: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return float64 tensors [C, L] of equal shape (estimate broadcast over channels)."""
    r = torch.as_tensor(np.asarray(ref) if not torch.is_tensor(ref) else ref).double()
    e = torch.as_tensor(np.asarray(est) if not torch.is_tensor(est) else est).double()
    r = r.unsqueeze(0) if r.dim() == 1 else r
    e = e.unsqueeze(0) if e.dim() == 1 else e
    if r.dim() != 2 or e.dim() != 2:
        raise ValueError(f"waveforms must be [C, L] or [L], got {tuple(r.shape)} and {tuple(e.shape)}")
    if e.shape[0] != r.shape[0]:
        if e.shape[0] == 1:
            e = e.expand(r.shape[0], -1)
        else:
            raise ValueError(f"channel mismatch: reference {r.shape[0]}, estimate {e.shape[0]}")
    n = min(r.shape[1], e.shape[1])
    if n == 0:
        raise ValueError("empty waveform")
    return r[:, :n], e[:, :n]


def si_sdr(ref: ArrayLike, est: ArrayLike) -> float:
    """Scale-invariant signal-to-distortion ratio in dB, averaged over channels."""
    r, e = _as_pair(ref, est)
    r = r - r.mean(dim=1, keepdim=True)
    e = e - e.mean(dim=1, keepdim=True)
    alpha = (e * r).sum(1, keepdim=True) / ((r * r).sum(1, keepdim=True) + EPS)
    target = alpha * r
    noise = e - target
    ratio = (target.pow(2).sum(1) + EPS) / (noise.pow(2).sum(1) + EPS)
    return float((10 * torch.log10(ratio)).mean())


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    # x [C, L] -> |X| [C, F, T]
    win = torch.hann_window(n_fft, dtype=x.dtype)
    if x.shape[1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[1]))
    spec = torch.stft(x, n_fft, hop_length=hop, window=win, center=True, return_complex=True)
    return spec.abs()


def mel_distance(ref: ArrayLike, est: ArrayLike, sample_rate: int, n_mels: int = 80) -> float:
    """Mean L1 distance between natural-log mel spectrograms (64 ms window, 16 ms hop)."""
    import torchaudio

    r, e = _as_pair(ref, est)
    n_fft = int(2 ** round(np.log2(0.064 * sample_rate)))
    hop = max(1, int(0.016 * sample_rate))
    fb = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
    ).double()  # [F, M]
    mr = torch.einsum("cft,fm->cmt", _stft_mag(r, n_fft, hop), fb)
    me = torch.einsum("cft,fm->cmt", _stft_mag(e, n_fft, hop), fb)
    return float((torch.log(mr.clamp_min(1e-5)) - torch.log(me.clamp_min(1e-5))).abs().mean())


def multires_stft_distance(
    ref: ArrayLike,
    est: ArrayLike,
    resolutions: Sequence[Tuple[int, int]] = ((512, 128), (1024, 256), (2048, 512)),
) -> float:
    """Multi-resolution STFT distance: mean over (n_fft, hop) of SC + L1 log magnitude."""
    r, e = _as_pair(ref, est)
    total = 0.0
    for n_fft, hop in resolutions:
        mr, me = _stft_mag(r, n_fft, hop), _stft_mag(e, n_fft, hop)
        sc = torch.linalg.norm(mr - me) / (torch.linalg.norm(mr) + EPS)
        logmag = (torch.log(mr.clamp_min(1e-7)) - torch.log(me.clamp_min(1e-7))).abs().mean()
        total += float(sc + logmag)
    return total / len(resolutions)


def log_spectral_distance(
    ref: ArrayLike,
    est: ArrayLike,
    sample_rate: int,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    n_fft: int = 2048,
    hop: int = 512,
) -> float:
    """Log-spectral distance in dB over bins with fmin <= f <= fmax (default: Nyquist).

    LSD = mean over channels and frames of sqrt(mean over bins of (10 log10 P_ref - 10 log10 P_est)^2).
    """
    r, e = _as_pair(ref, est)
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    band = (freqs >= fmin) & (freqs <= fmax)
    if not bool(band.any()):
        raise ValueError(f"no STFT bin between {fmin} and {fmax} Hz at {sample_rate} Hz")
    pr = _stft_mag(r, n_fft, hop)[:, band].pow(2)
    pe = _stft_mag(e, n_fft, hop)[:, band].pow(2)
    diff = 10 * torch.log10(pr + 1e-10) - 10 * torch.log10(pe + 1e-10)  # [C, F', T]
    return float(diff.pow(2).mean(dim=1).sqrt().mean())
