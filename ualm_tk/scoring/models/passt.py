"""``passt``: PaSST (Koutini et al., 2022) audio spectrogram transformer in torch, local checkpoint.

Architecture and key layout follow the public PaSST ``passt_s_swa_p16_128_ap476`` net (a
DeiT-style ViT: ``patch_embed.proj`` conv 16x16 stride 10, ``cls_token``, ``dist_token``,
``new_pos_embed``, ``freq_new_pos_embed``, ``time_new_pos_embed``, ``blocks.{i}.{norm1,attn.qkv,
attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head`` = LayerNorm + Linear, ``head_dist``).
Accepted files: a state dict of that net (``passt-s-f128-p16-s10-ap.476-swa.pt``), optionally
wrapped (``{"state_dict"|"model": ...}``) or prefixed ``net.``/``module.`` as written by the
``hear21passt`` wrapper; its ``mel.*`` buffers are ignored. Defaults are the real sizes
(32 kHz, 128 mel bins, 998 frames = 10 s, 768 wide, 12 blocks, 527 classes).
Front end re-implemented from the paper's code: pre-emphasis, |STFT|^2 (n_fft 1024, Hann 800,
hop 320), Kaldi mel banks 0–15 kHz, ``(log(mel + 1e-5) + 4.5) / 5``. Output = head of the mean of
the cls and dist tokens (logits; ``clip_posteriors`` = sigmoid; ``embed`` = that mean, 768-d).
Clips longer than ``input_tdim`` frames are scored in consecutive windows and averaged.
Honesty note: tested only on tiny stand-in checkpoints written in this layout by the tests.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from typeguard import typechecked

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.checkpoints import load_checked, read_class_labels, read_state_dict


class _Attention(torch.nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D))


class _Mlp(torch.nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(torch.nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(torch.nn.Module):
    def __init__(self, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = torch.nn.Conv2d(1, dim, patch, stride)


class Passt(AbsScorer):
    saves_weights = False

    @typechecked
    def __init__(self, checkpoint: Optional[str] = None, sample_rate: int = 32000, n_mels: int = 128,
                 input_tdim: int = 998, n_fft: int = 1024, win_length: int = 800, hop_size: int = 320,
                 fmax: float = 15000.0, patch_size: int = 16, patch_stride: int = 10, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, num_classes: int = 527,
                 class_labels: Optional[str] = None):
        super().__init__()
        self.conf = dict(checkpoint=checkpoint, sample_rate=sample_rate, n_mels=n_mels, input_tdim=input_tdim,
                         n_fft=n_fft, win_length=win_length, hop_size=hop_size, fmax=fmax, patch_size=patch_size,
                         patch_stride=patch_stride, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         mlp_ratio=mlp_ratio, num_classes=num_classes, class_labels=class_labels)
        self._sr = sample_rate
        f_grid = (n_mels - patch_size) // patch_stride + 1
        t_grid = (input_tdim - patch_size) // patch_stride + 1
        if f_grid < 1 or t_grid < 1:
            raise ValueError(f"passt: n_mels {n_mels} / input_tdim {input_tdim} smaller than patch {patch_size}")
        self.patch_embed = _PatchEmbed(embed_dim, patch_size, patch_stride)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.new_pos_embed = torch.nn.Parameter(torch.zeros(1, 2, embed_dim))
        self.freq_new_pos_embed = torch.nn.Parameter(torch.randn(1, embed_dim, f_grid, 1) * 0.02)
        self.time_new_pos_embed = torch.nn.Parameter(torch.randn(1, embed_dim, 1, t_grid) * 0.02)
        self.blocks = torch.nn.ModuleList(_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(embed_dim), torch.nn.Linear(embed_dim, num_classes))
        self.head_dist = torch.nn.Linear(embed_dim, num_classes)
        mel, _ = torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, float(sample_rate), 0.0, fmax,
                                                           100.0, -500.0, 1.0)
        self.register_buffer("mel_basis", F.pad(mel, (0, 1)), persistent=False)  # [n_mels, n_fft/2+1]
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        self._names = read_class_labels(class_labels, num_classes, "passt")
        if checkpoint:
            state = read_state_dict(checkpoint, "passt")
            state = {k[len("net."):] if k.startswith("net.") else k: v for k, v in state.items()}
            load_checked(self, state, checkpoint, "passt", ignore_prefixes=("mel.",),
                         hint="PaSST layout; set n_mels/input_tdim/embed_dim/depth/num_classes to the checkpoint's")
        self.eval()

    @property
    def sample_rate(self) -> int:
        return self._sr

    @property
    def class_names(self) -> List[str]:
        return list(self._names)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, L]`` -> ``[B, 1, n_mels, N]``."""
        c = self.conf
        x = F.conv1d(wav[:, None], self.preemphasis)[:, 0]
        spec = torch.stft(x, c["n_fft"], hop_length=c["hop_size"], win_length=c["win_length"], center=True,
                          window=self.window, return_complex=True).abs() ** 2  # [B, F, N]
        mel = torch.matmul(self.mel_basis, spec)
        return ((torch.log(mel + 1e-5) + 4.5) / 5.0)[:, None]

    def forward(self, mel: torch.Tensor):
        """``mel [B, 1, n_mels, N<=input_tdim]`` -> logits ``[B, C]``, features ``[B, D]``."""
        x = self.patch_embed.proj(mel)  # [B, D, F', T']
        x = x + self.time_new_pos_embed[:, :, :, : x.shape[-1]] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)
        B = x.shape[0]
        cls = self.cls_token.expand(B, -1, -1) + self.new_pos_embed[:, :1]
        dist = self.dist_token.expand(B, -1, -1) + self.new_pos_embed[:, 1:]
        x = torch.cat([cls, dist, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        feats = (x[:, 0] + x[:, 1]) / 2
        return self.head(feats), feats

    @torch.no_grad()
    def _run(self, wav, sr):
        mel = self.log_mel(self.prepare(wav, sr)[None])  # [1, 1, M, N]
        T, P = self.conf["input_tdim"], self.conf["patch_size"]
        N = mel.shape[-1]
        if N < P:
            mel = F.pad(mel, (0, P - N))
        wins = [mel[..., i: i + T] for i in range(0, max(N, 1), T)]
        wins = [w if w.shape[-1] >= P else F.pad(w, (0, P - w.shape[-1])) for w in wins]
        outs = [self(w) for w in wins]
        return torch.stack([o[0] for o in outs]).mean(0)[0], torch.stack([o[1] for o in outs]).mean(0)[0]

    def logits(self, wav, sr: int) -> np.ndarray:
        return self._run(wav, sr)[0].numpy()

    def clip_posteriors(self, wav, sr: int):
        return torch.sigmoid(self._run(wav, sr)[0]).numpy(), self.class_names

    def embed(self, wav, sr: int) -> np.ndarray:
        return self._run(wav, sr)[1].numpy().astype(np.float32)
