"""Fixed (untrained) audio front end shared by the toolkit's own scorers, and audio loading.

``LogMel``: 16 kHz waveform -> log-mel ``[n_mels, N]`` at 100 frames/s (25 ms Hann window,
10 ms hop, slaney mel, ``log10`` clamped to the clip's peak - 8). ``level_norm`` says what
happens next:

* ``"peak"``: subtract the clip's peak (its largest log-mel value, floored at ``PEAK_FLOOR`` so
  digital silence stays silence), then ``(x + 4) / 4``, so the features lie in ``[-1, 1]`` and do
  not depend on the clip's level: the same clip 12 dB quieter (as the codec's reconstruction is,
  median) gives the same features up to rounding.
* ``"none"``: Whisper's ``(x + 4) / 4`` on the absolute values (features shift by ``g / 40``
  for a gain of ``g`` dB). Kept so scorers trained with it load and score as before.

It has no parameters, so log-mels can be computed once and cached
(:func:`ualm_tk.scoring.models.corpus.compute_logmels`).

``pitch_warp``: the log-mel of the same sound with every frequency multiplied by ``factor``
(a pitch shift without a tempo change), computed from the cached features by reading each mel
band at the mel position of ``centre / factor``; a training-time augmentation for classes whose
label does not depend on pitch (a "square tone" at any frequency).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio

logger = logging.getLogger(__name__)

MEL_RATE = 100  # log-mel frames per second
LEVEL_NORMS = ("none", "peak")
# log10 mel power below which a clip's peak is not normalised up (~ -50 dB re a full-scale tone;
# the recipe's clips peak at 0.4 .. 1.6, their codec resynthesis at -1.7 .. 0.7)
PEAK_FLOOR = -5.0


class AudioLoadError(ValueError):
    """An audio file cannot be read or is empty."""


def to_mono_tensor(wav: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """Any of ``[L]``, ``[C, L]``, ``[1, C, L]`` -> mono float ``[L]`` (channel mean)."""
    x = torch.as_tensor(wav, dtype=torch.float32)
    if x.dim() == 3:
        if x.shape[0] != 1:
            raise ValueError(f"expected one clip, got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
        x = x[0]
    if x.dim() == 2:
        x = x.mean(dim=0)
    if x.dim() != 1:
        raise ValueError(f"waveform must be [L], [C,L] or [1,C,L]; got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("waveform is empty")
    return x


def resample(x: torch.Tensor, sr: int, target_sr: int) -> torch.Tensor:
    """``x [..., L]`` at ``sr`` -> ``[..., L']`` at ``target_sr`` (torchaudio sinc resampling)."""
    if int(sr) == int(target_sr):
        return x
    return torchaudio.functional.resample(x, int(sr), int(target_sr))


def load_audio(path: Union[str, Path], target_sr: int) -> torch.Tensor:
    """Read a file with soundfile -> mono float ``[L]`` at ``target_sr``; clear error if unreadable."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [L, C]
    except Exception as e:  # soundfile raises several types
        raise AudioLoadError(f"{path}: cannot read audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioLoadError(f"{path}: audio file has no samples")
    return resample(torch.from_numpy(data.T.copy()).mean(dim=0), sr, target_sr)


F_MIN = 20.0  # lowest mel filter edge (Hz)


def hz_to_mel_slaney(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (torchaudio's ``mel_scale="slaney"``): linear below 1 kHz, log above."""
    f = torch.as_tensor(f, dtype=torch.float64)
    lin = 3.0 * f / 200.0
    log = 15.0 + torch.log(f.clamp(min=1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return torch.where(f < 1000.0, lin, log)


def mel_to_hz_slaney(m: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    return torch.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * torch.exp((m - 15.0) * (np.log(6.4) / 27.0)))


@functools.lru_cache(maxsize=8)
def _mel_grid(n_mels: int, sample_rate: int) -> Tuple[float, float, torch.Tensor]:
    """LogMel's band centres: first centre (mel), spacing (mel), centres ``[n_mels]`` (Hz)."""
    lo_m, hi_m = hz_to_mel_slaney(torch.tensor(F_MIN)), hz_to_mel_slaney(torch.tensor(sample_rate / 2))
    m_pts = torch.linspace(float(lo_m), float(hi_m), n_mels + 2, dtype=torch.float64)
    return float(m_pts[1]), float(m_pts[1] - m_pts[0]), mel_to_hz_slaney(m_pts[1:-1])


def pitch_warp(feats: torch.Tensor, factor: float, sample_rate: int = 16000, floor: float = -1.0,
               renorm_peak: bool = True) -> torch.Tensor:
    """``feats [n_mels, N]`` (a :class:`LogMel` output) -> the same shape for the sound pitch-shifted by ``factor``.

    Band ``i`` (centre ``f_i``) takes the value at mel position ``mel(f_i / factor)`` (linear
    interpolation between bands); content moved in from above the top band is ``floor`` (silence),
    from below the lowest band the lowest band's value. With ``renorm_peak`` the result is shifted
    so its largest value equals the input's (``level_norm: peak`` features peak at 1).
    """
    n_mels = feats.shape[0]
    first, step, centres = _mel_grid(n_mels, sample_rate)
    pos = (hz_to_mel_slaney(centres / factor) - first) / step  # [n_mels] fractional band index
    lo = pos.floor().clamp(0, n_mels - 1).long()
    hi = (lo + 1).clamp(max=n_mels - 1)
    w = (pos - lo.double()).clamp(0.0, 1.0).to(feats.dtype)[:, None]  # [n_mels, 1]
    out = feats[lo] * (1 - w) + feats[hi] * w  # [n_mels, N]
    if renorm_peak and feats.numel():
        out = (out + (feats.max() - out.max())).clamp(min=floor)
    out[pos > n_mels - 1 + 1e-6] = floor  # moved in from above the top band: silence
    return out


class LogMel(torch.nn.Module):
    """``wav [B, L]`` (16 kHz) -> normalised log-mel ``[B, n_mels, N]``, ``N = L // hop + 1``."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, level_norm: str = "none"):
        super().__init__()
        if sample_rate % MEL_RATE:
            raise ValueError(f"sample_rate {sample_rate} must be a multiple of {MEL_RATE}")
        if level_norm not in LEVEL_NORMS:
            raise ValueError(f"level_norm must be one of {LEVEL_NORMS}, got {level_norm!r}")
        self.level_norm = level_norm
        self.sample_rate = sample_rate
        self.hop = sample_rate // MEL_RATE
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=int(round(0.025 * sample_rate)), hop_length=self.hop,
            n_mels=n_mels, f_min=F_MIN, f_max=sample_rate / 2, center=True, pad_mode="constant",
            power=2.0, norm="slaney", mel_scale="slaney",
        )

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop + 1

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mel = self.mel(wav.float())  # [B, n_mels, N]
        if self.level_norm == "none":
            logmel = torch.clamp(mel, min=1e-10).log10()
            peak = logmel.amax(dim=(1, 2), keepdim=True)  # [B, 1, 1]
            return (torch.maximum(logmel, peak - 8.0) + 4.0) / 4.0
        logmel = torch.clamp(mel, min=1e-14).log10()
        # relative to the clip's peak (any clip louder than PEAK_FLOOR); a (near-)silent clip is not
        # blown up to full scale: it stays at the floor, -1
        ref = logmel.amax(dim=(1, 2), keepdim=True).clamp(min=PEAK_FLOOR)  # [B, 1, 1]
        logmel = torch.maximum(logmel, ref - 8.0) - ref  # [-8, 0]
        return (logmel + 4.0) / 4.0

    def cache_tag(self) -> str:
        """What decides the features (part of the log-mel cache fingerprint)."""
        if self.level_norm == "none":
            return f"{self.sample_rate} {self.n_mels}"  # as before level_norm existed: old caches stay valid
        return f"{self.sample_rate} {self.n_mels} level_norm={self.level_norm}"
