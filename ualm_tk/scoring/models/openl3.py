"""``openl3``: OpenL3 audio embedding network (Cramer et al., 2019; ``mel256`` input) in torch.

Architecture of the public ``openl3`` mel256 audio subnetwork: 1 s windows at 48 kHz ->
magnitude mel spectrogram (n_fft 2048, hop 242, 256 HTK mel bins) in dB (peak-referenced,
80 dB range) -> BatchNorm -> 4 stages of [3x3 conv + BN + ReLU] x2 (64, 128, 256 channels,
2x2 max pooling after the first three; the last stage is conv 512 + BN + ReLU then the linear
``audio_embedding_layer`` conv 512) -> max pooling to 512-d (or (8, 8) pooling to 6144-d).
``embed`` averages the window embeddings (windows every ``hop_s``); ``frame_embeddings`` returns
them all ``[T, E]`` (as stable-audio-metrics' FD uses them).

Checkpoint format: a torch state dict in THIS module's key layout (``input_bn``, ``stages.{i}.
{conv,bn}``, ``audio_embedding_layer``). The official weights are Keras ``.h5`` files; this
module does not convert them (no real OpenL3 weights were available offline), so a user must
convert them into this layout (kernel ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``). Tested
only on tiny stand-in checkpoints written by the tests. The mel front end is re-implemented with
torchaudio and is close to, not bit-identical with, kapre's.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from typeguard import typechecked

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.checkpoints import load_checked, read_state_dict


class _ConvBN(torch.nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class OpenL3(AbsScorer):
    saves_weights = False

    @typechecked
    def __init__(self, checkpoint: Optional[str] = None, sample_rate: int = 48000, n_fft: int = 2048,
                 hop_length: int = 242, n_mels: int = 256, channels: List[int] = [64, 128, 256, 512],
                 embedding_size: int = 512, window_s: float = 1.0, hop_s: float = 0.1):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"openl3: 4 stages expected, got channels {channels}")
        if embedding_size not in (channels[-1], 6144) and embedding_size != channels[-1] * 12:
            raise ValueError(f"openl3: embedding_size must be {channels[-1]} (global max) or 6144")
        self.conf = dict(checkpoint=checkpoint, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                         n_mels=n_mels, channels=list(channels), embedding_size=embedding_size,
                         window_s=window_s, hop_s=hop_s)
        self._sr = sample_rate
        self.spec = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length,
                                                         n_mels=n_mels, power=1.0, mel_scale="htk", center=True)
        self.input_bn = torch.nn.BatchNorm2d(1, eps=1e-3)
        c = [1] + list(channels)
        layers = []
        for i in range(3):
            layers += [_ConvBN(c[i], c[i + 1]), _ConvBN(c[i + 1], c[i + 1])]
        layers.append(_ConvBN(c[3], c[4]))
        self.stages = torch.nn.ModuleList(layers)
        self.audio_embedding_layer = torch.nn.Conv2d(c[4], c[4], 3, padding=1)
        if checkpoint:
            state = read_state_dict(checkpoint, "openl3")
            load_checked(self, state, checkpoint, "openl3", ignore_prefixes=("spec.",),
                         hint="ualm_tk OpenL3 layout: input_bn, stages.0-6.{conv,bn}, audio_embedding_layer")
        self.eval()

    @property
    def sample_rate(self) -> int:
        return self._sr

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows [W, window samples]`` -> embeddings ``[W, E]``."""
        m = self.spec(windows)  # [W, n_mels, N]
        db = 10.0 * torch.log10(torch.clamp(m, min=1e-10))
        db = torch.maximum(db - db.amax(dim=(1, 2), keepdim=True), torch.tensor(-80.0))
        x = self.input_bn(db[:, None])
        for i, layer in enumerate(self.stages):
            x = layer(x)
            if i in (1, 3, 5):
                x = F.max_pool2d(x, 2)
        x = self.audio_embedding_layer(x)  # [W, 512, F', T']
        if self.conf["embedding_size"] == self.conf["channels"][-1]:
            return x.amax(dim=(2, 3))
        return F.adaptive_max_pool2d(x, (4, 3)).flatten(1)  # 512 x 4 x 3 = 6144

    @torch.no_grad()
    def frame_embeddings(self, wav, sr: int) -> np.ndarray:
        """``[T, E]``: one embedding per ``window_s`` window, every ``hop_s`` (centre-padded)."""
        x = self.prepare(wav, sr)
        win = int(round(self.conf["window_s"] * self._sr))
        hop = int(round(self.conf["hop_s"] * self._sr))
        x = F.pad(x, (win // 2, win // 2))
        n = max(1, 1 + (x.numel() - win) // hop)
        if x.numel() < win:
            x = F.pad(x, (0, win - x.numel()))
        windows = torch.stack([x[i * hop: i * hop + win] for i in range(n)])
        return torch.cat([self(windows[i: i + 64]) for i in range(0, n, 64)]).numpy().astype(np.float32)

    def embed(self, wav, sr: int) -> np.ndarray:
        return self.frame_embeddings(wav, sr).mean(axis=0)
