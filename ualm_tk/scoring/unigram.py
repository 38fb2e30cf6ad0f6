"""Per-stream unigram baseline for codec tokens: what a model that ignores all context scores.

:class:`UnigramCodes` counts codes per stream (``codes [K,T]``), estimates
``p_k(c) = (count_k(c) + 1) / (total_k + N)`` (add-one smoothing) and evaluates the mean negative
log-likelihood per stream in nats/token on other codes. A trained LM must beat it.
"""

from __future__ import annotations

from typing import Dict, Iterable, List

import numpy as np


class UnigramCodes:
    """Add-one-smoothed unigram code frequencies of K streams over a codebook of N codes."""

    def __init__(self, num_codebooks: int, codebook_size: int):
        if num_codebooks < 1 or codebook_size < 1:
            raise ValueError(f"num_codebooks and codebook_size must be >= 1, got {num_codebooks}, {codebook_size}")
        self.K, self.N = int(num_codebooks), int(codebook_size)
        self.counts = np.zeros((self.K, self.N), dtype=np.int64)  # [K,N]

    def _check(self, codes: np.ndarray, what: str) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.K:
            raise ValueError(f"{what}: codes must be [K={self.K}, T], got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.N):
            raise ValueError(f"{what}: codes outside [0, {self.N}) (min {codes.min()}, max {codes.max()})")
        return codes.astype(np.int64)

    def add(self, codes: np.ndarray, what: str = "codes") -> None:
        """Count ``codes [K,T]``."""
        codes = self._check(codes, what)
        for k in range(self.K):
            self.counts[k] += np.bincount(codes[k], minlength=self.N)

    def add_all(self, items: Iterable[np.ndarray]) -> None:
        for i, c in enumerate(items):
            self.add(c, f"item {i}")

    @property
    def num_frames(self) -> int:
        return int(self.counts[0].sum())

    def log_probs(self) -> np.ndarray:
        """``log p_k(c)`` ``[K,N]`` with add-one smoothing."""
        return np.log((self.counts + 1.0) / (self.counts.sum(axis=1, keepdims=True) + self.N))

    def nll(self, items: Iterable[np.ndarray]) -> Dict[str, object]:
        """Mean NLL (nats/token) per stream and over streams of the codes ``[K,T]`` in ``items``."""
        lp = self.log_probs()
        tot = np.zeros(self.K)
        n = 0
        for i, c in enumerate(items):
            c = self._check(c, f"item {i}")
            for k in range(self.K):
                tot[k] -= lp[k, c[k]].sum()
            n += c.shape[1]
        if n == 0:
            raise ValueError("no frames to evaluate")
        per: List[float] = (tot / n).tolist()
        return {"per_stream": per, "mean": float(np.mean(per)), "num_frames": n}
