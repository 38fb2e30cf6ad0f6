"""Residual vector quantiser with data-initialised, EMA-updated codebooks.

- Initialisation from data: on the first training batch each codebook runs k-means (k-means++
  seeding) on the residual it receives (vectors sampled with replacement when the batch holds
  fewer vectors than entries).
- EMA updates (van den Oord et al. 2017, SoundStream): codebooks are buffers, not parameters;
  ``ema_cluster_size [N]`` and ``ema_embed_sum [N, D]`` decay with ``decay``; Laplace smoothing.
- Dead-code restarts: entries whose EMA count falls below ``dead_ratio`` times the mean count per
  entry (their fair share) are replaced by random residual vectors of the current batch.
- Quantizer dropout: during training a random number ``n_q`` in ``[1, K]`` of codebooks is used
  for a share ``dropout_prob`` of the batches, so decoding from the first ``K' < K`` works.

Shapes: ``z [B, D, T]`` -> ``z_q [B, D, T]``, ``codes [B, K, T]``.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def kmeans(x: torch.Tensor, num_clusters: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means (k-means++ seeding) on ``x [M, D]`` -> centroids ``[num_clusters, D]``.

    Empty clusters keep their seed; with fewer vectors than clusters the seeds repeat vectors
    with a small jitter so that they can separate later.
    """
    m = x.shape[0]
    if m <= num_clusters:
        idx = torch.randint(0, m, (num_clusters,), generator=generator)
        cent = x[idx].clone()
        cent += 1e-3 * (x.std() + 1e-8) * torch.randn(cent.shape, generator=generator)
    else:
        first = int(torch.randint(0, m, (1,), generator=generator))
        cent = x.new_empty(num_clusters, x.shape[1])
        cent[0] = x[first]
        d2 = (x - cent[0]).pow(2).sum(1)  # [M] squared distance to the nearest seed
        for j in range(1, num_clusters):
            total = float(d2.sum())
            pick = (int(torch.multinomial(d2 / total, 1, generator=generator)) if total > 0
                    else int(torch.randint(0, m, (1,), generator=generator)))
            cent[j] = x[pick]
            d2 = torch.minimum(d2, (x - cent[j]).pow(2).sum(1))
    for _ in range(iters):
        assign = torch.cdist(x, cent).argmin(dim=1)  # [M]
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=num_clusters).to(x.dtype)
        filled = counts > 0
        cent[filled] = sums[filled] / counts[filled, None]
    return cent


class EMAVectorQuantizer(torch.nn.Module):
    """One codebook of ``codebook_size`` entries of dimension ``dim``."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_iters: int = 10,
        dead_ratio: float = 0.05,
    ):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.dead_ratio = dead_ratio
        self.register_buffer("initted", torch.tensor(False))
        self.register_buffer("codebook", torch.zeros(codebook_size, dim))  # [N, D]
        self.register_buffer("ema_cluster_size", torch.zeros(codebook_size))  # [N]
        self.register_buffer("ema_embed_sum", torch.zeros(codebook_size, dim))  # [N, D]

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``x [M, D]`` -> indices ``[M]`` of the nearest entries (squared Euclidean)."""
        cb = self.codebook
        dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ cb.t() + cb.pow(2).sum(1)[None, :]  # [M, N]
        return dist.argmin(dim=1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.codebook)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator) -> None:
        x = x.detach().float()
        cent = kmeans(x, self.codebook_size, self.kmeans_iters, generator)
        # EMA statistics start from the k-means assignment of this batch
        counts = torch.bincount(torch.cdist(x, cent).argmin(1), minlength=self.codebook_size).to(x.dtype)
        counts = counts.clamp_min(x.shape[0] / self.codebook_size * self.dead_ratio * 2)
        self.codebook.copy_(cent)
        self.ema_cluster_size.copy_(counts)
        self.ema_embed_sum.copy_(cent * counts[:, None])
        self.initted.fill_(True)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator) -> int:
        """EMA step on ``x [M, D]`` assigned to ``idx [M]``; returns the number of restarted codes."""
        onehot = F.one_hot(idx, self.codebook_size).to(x.dtype)  # [M, N]
        counts = onehot.sum(0)  # [N]
        sums = onehot.t() @ x  # [N, D]
        self.ema_cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.codebook.copy_(self.ema_embed_sum / smoothed[:, None])
        dead = self.ema_cluster_size < self.dead_ratio * n / self.codebook_size
        num_dead = int(dead.sum())
        if num_dead:
            pick = torch.randint(0, x.shape[0], (num_dead,), generator=generator)
            fresh = x[pick]
            share = float(n) / self.codebook_size  # restart at the mean count per entry
            self.codebook[dead] = fresh
            self.ema_embed_sum[dead] = fresh * share
            self.ema_cluster_size[dead] = share
        return num_dead


class ResidualVectorQuantizer(torch.nn.Module):
    """``num_codebooks`` EMA codebooks applied to successive residuals."""

    def __init__(
        self,
        dim: int,
        num_codebooks: int = 8,
        codebook_size: int = 256,
        decay: float = 0.99,
        kmeans_iters: int = 10,
        dead_ratio: float = 0.05,
        dropout_prob: float = 0.5,
        seed: int = 0,
    ):
        super().__init__()
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.dropout_prob = dropout_prob
        self.layers = torch.nn.ModuleList(
            EMAVectorQuantizer(dim, codebook_size, decay, kmeans_iters=kmeans_iters,
                               dead_ratio=dead_ratio)
            for _ in range(num_codebooks)
        )
        self._gen = torch.Generator().manual_seed(seed)
        self.last_restarts = 0

    def forward(
        self, z: torch.Tensor, n_q: Optional[int] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training/analysis pass: ``z [B, D, T]`` -> (``z_q [B, D, T]`` straight-through,
        ``codes [B, n_q, T]``, commitment loss scalar).

        In training mode codebooks are initialised/updated and, when ``n_q`` is None, a random
        ``n_q`` is drawn for quantizer dropout.
        """
        b, d, t = z.shape
        if n_q is None:
            n_q = self.num_codebooks
            if self.training and self.dropout_prob > 0:
                if float(torch.rand((), generator=self._gen)) < self.dropout_prob:
                    n_q = int(torch.randint(1, self.num_codebooks + 1, (), generator=self._gen))
        x = z.permute(0, 2, 1).reshape(-1, d)  # [B*T, D]
        residual = x
        quantized = torch.zeros_like(x)
        codes = []
        commit = x.new_zeros(())
        restarts = 0
        for layer in self.layers[:n_q]:
            r = residual.detach()
            if self.training and not bool(layer.initted):
                layer.init_from_data(r, self._gen)
                logger.info("codebook initialised by k-means on %d vectors", r.shape[0])
            idx = layer.quantize(r)
            q = layer.lookup(idx)
            if self.training:
                restarts += layer.ema_update(r, idx, self._gen)
            commit = commit + F.mse_loss(residual, q.detach())
            quantized = quantized + q
            residual = residual - q.detach()
            codes.append(idx)
        self.last_restarts = restarts
        z_q = x + (quantized - x).detach()  # straight-through estimator
        z_q = z_q.reshape(b, t, d).permute(0, 2, 1)
        codes_t = torch.stack(codes, dim=1).reshape(b, t, n_q).permute(0, 2, 1)  # [B, n_q, T]
        return z_q, codes_t, commit / n_q

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D, T]`` -> ``codes [B, K, T]`` (no updates)."""
        b, d, t = z.shape
        residual = z.permute(0, 2, 1).reshape(-1, d)
        codes = []
        for layer in self.layers:
            idx = layer.quantize(residual)
            residual = residual - layer.lookup(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1).reshape(b, t, -1).permute(0, 2, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, K', T]`` -> ``z_q [B, D, T]`` (sum of the first K' codebooks)."""
        out = None
        for k in range(codes.shape[1]):
            q = self.layers[k].lookup(codes[:, k])  # [B, T, D]
            out = q if out is None else out + q
        return out.permute(0, 2, 1)
