"""``panns``: PANNs Cnn14 (Kong et al., 2020) in torch, loading a user's local checkpoint.

Architecture and state-dict key layout follow the public PANNs ``Cnn14`` (``Cnn14_mAP=0.431.pth``
stores ``{"model": state_dict, ...}``): STFT as two fixed conv1d banks
(``spectrogram_extractor.stft.conv_real/conv_imag.weight``), ``logmel_extractor.melW``
(``[n_fft/2+1, mel_bins]``), ``bn0`` over mel bins, six ``conv_block{i}`` (two 3x3 conv + BN + ReLU,
2x2 average pooling, none after block 6), ``fc1`` (embedding, 2048-d) and ``fc_audioset`` (527
sigmoid outputs). The defaults are the real sizes (32 kHz, window 1024, hop 320, 64 mel bins,
50–14000 Hz, channels 64…2048). Honesty note: this loader was tested only on tiny stand-in
checkpoints written in that layout by the tests (no real PANNs weights are available offline);
the log-mel front end is re-implemented here (reflect padding, power spectrum, ``10 log10``) and
is built from the checkpoint's own STFT / mel tensors, so the real file's values are used.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from typeguard import typechecked

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.checkpoints import load_checked, read_class_labels, read_state_dict


class _STFT(torch.nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        win = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        ang = 2 * math.pi * k[:, None] * n[None, :] / n_fft  # [F, n_fft]
        self.conv_real = torch.nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = torch.nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_real.weight.data = (torch.cos(ang) * win)[:, None, :].float()
        self.conv_imag.weight.data = (-torch.sin(ang) * win)[:, None, :].float()


class _Spectrogram(torch.nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)
        self.n_fft, self.hop = n_fft, hop

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [B, L] -> power [B, 1, T, F]
        x = F.pad(wav[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        re = self.stft.conv_real(x)
        im = self.stft.conv_imag(x)  # [B, F, T]
        return (re ** 2 + im ** 2).transpose(1, 2)[:, None]


class _LogMel(torch.nn.Module):
    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sr, norm="slaney",
                                                   mel_scale="slaney")  # [F, n_mels]
        self.melW = torch.nn.Parameter(fb, requires_grad=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # [B,1,T,F] -> [B,1,T,M]
        return 10.0 * torch.log10(torch.clamp(spec @ self.melW, min=1e-10))


class _ConvBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.bn2 = torch.nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: Tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class PannsCnn14(AbsScorer):
    saves_weights = False

    @typechecked
    def __init__(self, checkpoint: Optional[str] = None, sample_rate: int = 32000, window_size: int = 1024,
                 hop_size: int = 320, mel_bins: int = 64, fmin: float = 50.0, fmax: float = 14000.0,
                 classes_num: int = 527, channels: List[int] = [64, 128, 256, 512, 1024, 2048],
                 class_labels: Optional[str] = None):
        super().__init__()
        if len(channels) != 6:
            raise ValueError(f"panns: Cnn14 has 6 conv blocks, got channels {channels}")
        if mel_bins < 32:
            raise ValueError(f"panns: mel_bins must be >= 32 (five 2x2 poolings), got {mel_bins}")
        self.conf = dict(checkpoint=checkpoint, sample_rate=sample_rate, window_size=window_size,
                         hop_size=hop_size, mel_bins=mel_bins, fmin=fmin, fmax=fmax, classes_num=classes_num,
                         channels=list(channels), class_labels=class_labels)
        self._sr = sample_rate
        self.spectrogram_extractor = _Spectrogram(window_size, hop_size)
        self.logmel_extractor = _LogMel(sample_rate, window_size, mel_bins, fmin, fmax)
        self.bn0 = torch.nn.BatchNorm2d(mel_bins)
        cins = [1] + list(channels[:-1])
        for i, (ci, co) in enumerate(zip(cins, channels), start=1):
            setattr(self, f"conv_block{i}", _ConvBlock(ci, co))
        self.fc1 = torch.nn.Linear(channels[-1], channels[-1])
        self.fc_audioset = torch.nn.Linear(channels[-1], classes_num)
        self._names = read_class_labels(class_labels, classes_num, "panns")
        if checkpoint:
            load_checked(self, read_state_dict(checkpoint, "panns"), checkpoint, "panns",
                         hint="PANNs Cnn14 layout: conv_block1..6, fc1, fc_audioset; set channels/mel_bins/"
                              "window_size/classes_num to the checkpoint's sizes")
        self.eval()

    @property
    def sample_rate(self) -> int:
        return self._sr

    @property
    def class_names(self) -> List[str]:
        return list(self._names)

    def forward(self, wav: torch.Tensor):
        """``wav [B, L]`` -> ``clipwise [B, classes]`` (sigmoid), ``embedding [B, channels[-1]]``."""
        x = self.logmel_extractor(self.spectrogram_extractor(wav))  # [B, 1, T, M]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, (2, 2) if i < 6 else (1, 1))
        x = x.mean(dim=3)  # [B, C, T']
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        x = x.max(dim=2).values + x.mean(dim=2)  # [B, C]
        emb = F.relu(self.fc1(x))
        return torch.sigmoid(self.fc_audioset(emb)), emb

    @torch.no_grad()
    def _run(self, wav, sr):
        x = self.prepare(wav, sr)
        min_len = max(self.conf["hop_size"] * 32, self.conf["window_size"])  # >= 32 frames: five 2x2 poolings
        if x.numel() < min_len:
            x = F.pad(x, (0, min_len - x.numel()))
        return self(x[None])

    def clip_posteriors(self, wav, sr: int):
        p, _ = self._run(wav, sr)
        return p[0].numpy(), self.class_names

    def embed(self, wav, sr: int) -> np.ndarray:
        _, e = self._run(wav, sr)
        return e[0].numpy().astype(np.float32)
