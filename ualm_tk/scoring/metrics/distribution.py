"""Distribution metrics for generated audio: Fréchet distance, paired KL, Inception Score, CLAP score.

All four work on arrays produced by an embedding or classifier model (the *backbone*); the
backbone's name and sample rate are recorded in every :class:`MetricResult`.

| metric | definition | direction |
|---|---|---|
| FD | ``||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^1/2)`` of Gaussian fits of embeddings | lower is better |
| KL | mean over paired keys of ``KL(p_ref || p_gen)`` (or ``gen||ref``) between class posteriors | lower is better |
| IS | ``exp(E_x KL(p(y|x) || p(y)))`` per split, mean and std over 10 splits | higher is better |
| CLAP | mean cosine between paired text and audio embeddings | higher is better |
"""

from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
from scipy.special import expit, log_softmax, rel_entr

from ualm_tk.scoring.metrics.result import HIGHER, LOWER, MetricResult, check_same_keys

logger = logging.getLogger(__name__)

KL_DIRECTIONS = ("ref||gen", "gen||ref")  # audioldm_eval/audiocraft, stable-audio-metrics
POSTERIOR_KINDS = ("softmax_logits", "probs", "sigmoid_logits", "multilabel_probs")


# ----------------------------------------------------------------------------- Fréchet distance
def gaussian_stats(emb: np.ndarray, name: str = "embeddings") -> Tuple[np.ndarray, np.ndarray]:
    """``emb [N, D]`` -> ``(mu [D], sigma [D, D])`` in float64.

    ``sigma`` is the unbiased sample covariance (divides by N - 1, ``np.cov``), as in
    pytorch-fid, audioldm_eval and stable-audio-metrics.
    """
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a matrix [N, D], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 embeddings for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        bad = np.where(~np.isfinite(x).all(axis=1))[0]
        raise ValueError(f"{name}: non-finite values in rows {bad[:5].tolist()}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((S1 S2)^1/2)`` for covariance matrices, computed stably.

    ``S1 S2`` is similar to the symmetric PSD matrix ``S1^1/2 S2 S1^1/2``, so both have the same
    (non-negative) eigenvalues; the trace of the square root is the sum of their square roots.
    This avoids ``scipy.linalg.sqrtm`` of a non-symmetric product and its complex round-off.
    """
    s1h = _psd_sqrt(sigma1)
    m = s1h @ sigma2 @ s1h
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"dimension mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(fd, 0.0)  # tiny negative values are round-off of identical fits


def frechet_distance(gen_emb: np.ndarray, ref_emb: np.ndarray, backbone: str,
                     sample_rate: Optional[int]) -> MetricResult:
    """FD between Gaussian fits of generated ``[N_g, D]`` and reference ``[N_r, D]`` embeddings.

    The sets need not be paired or of equal size. Note the estimate is *biased* (upward) for
    small N: even two samples of one distribution give FD > 0, growing with D / N — compare
    systems only at equal N and backbone (the covariance itself is the unbiased N-1 estimate).
    """
    g, r = np.asarray(gen_emb), np.asarray(ref_emb)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise ValueError(f"FD: embedding dimension mismatch: generated {g.shape}, reference {r.shape}")
    mu_g, s_g = gaussian_stats(g, "generated embeddings")
    mu_r, s_r = gaussian_stats(r, "reference embeddings")
    fd = frechet_distance_from_stats(mu_g, s_g, mu_r, s_r)
    return MetricResult("FD", fd, LOWER, backbone, sample_rate, int(g.shape[0]),
                        {"num_reference": int(r.shape[0]), "dim": int(g.shape[1]),
                         "covariance": "unbiased (N-1)", "bias_note": "FD is biased upward for small N"})


# ----------------------------------------------------------------------------- paired KL
def posteriors(x: np.ndarray, kind: str) -> np.ndarray:
    """Class probabilities from a classifier output ``[..., C]`` (see ``POSTERIOR_KINDS``)."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "softmax_logits":
        return np.exp(log_softmax(x, axis=-1))
    if kind == "sigmoid_logits":
        return expit(x)
    if kind in ("probs", "multilabel_probs"):
        lo = "0..1" if kind == "multilabel_probs" else "a distribution"
        if (x < 0).any() or (x > 1 + 1e-6).any():
            raise ValueError(f"{kind}: values must be {lo}; got range [{x.min():.4g}, {x.max():.4g}]")
        if kind == "probs" and not np.allclose(x.sum(-1), 1.0, atol=1e-4):
            raise ValueError(f"probs: rows must sum to 1 (got sums like {x.sum(-1).ravel()[:3]})")
        return x
    raise ValueError(f"unknown posterior kind {kind!r}; use one of {POSTERIOR_KINDS}")


def kl_divergence(p: np.ndarray, q: np.ndarray, multilabel: bool = False, eps: float = 1e-12) -> float:
    """KL(p || q) in nats for one clip.

    Single-label: ``sum_c p_c log(p_c / q_c)``. Multi-label (independent per-class Bernoullis,
    the KL of their product distribution): ``sum_c KL(Bern(p_c) || Bern(q_c))``. ``q`` is floored
    at ``eps`` so a zero where ``p`` is positive gives a large finite value.
    """
    p, q = np.asarray(p, np.float64), np.clip(np.asarray(q, np.float64), eps, None)
    if multilabel:
        q1 = np.clip(1.0 - np.asarray(q), eps, None)
        return float((rel_entr(p, q) + rel_entr(1.0 - p, q1)).sum())
    return float(rel_entr(p, q).sum())


def paired_kl(gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], backbone: str,
              sample_rate: Optional[int], direction: str = "ref||gen", kind: str = "softmax_logits") -> MetricResult:
    """Mean over keys of the KL between the reference and generated clip's class posteriors.

    ``gen`` and ``ref`` map key -> classifier output ``[C]`` (logits or probabilities, ``kind``);
    keys are paired by name and must be identical sets. ``direction`` ``"ref||gen"`` is
    KL(p_ref || p_gen) as audioldm_eval/audiocraft; ``"gen||ref"`` as stable-audio-metrics.
    """
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"KL direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    keys = check_same_keys(gen, ref, "generated posteriors", "reference posteriors")
    multilabel = kind in ("sigmoid_logits", "multilabel_probs")
    per_key: Dict[str, float] = {}
    n_classes = None
    for k in keys:
        g, r = np.asarray(gen[k]), np.asarray(ref[k])
        if g.ndim != 1 or g.shape != r.shape:
            raise ValueError(f"KL: key {k}: expected two vectors [C] of equal size, got {g.shape} and {r.shape}")
        if n_classes is not None and g.shape[0] != n_classes:
            raise ValueError(f"KL: key {k} has {g.shape[0]} classes, earlier keys {n_classes}")
        n_classes = g.shape[0]
        pg, pr = posteriors(g, kind), posteriors(r, kind)
        per_key[k] = kl_divergence(pr, pg, multilabel) if direction == "ref||gen" else kl_divergence(pg, pr, multilabel)
    return MetricResult(f"KL_{'softmax' if not multilabel else 'sigmoid'}", float(np.mean(list(per_key.values()))),
                        LOWER, backbone, sample_rate, len(keys),
                        {"direction": f"KL({direction.replace('||', ' || ')})", "posterior": kind,
                         "num_classes": int(n_classes), "per_key": per_key})


# ----------------------------------------------------------------------------- Inception Score
def inception_score(outputs: np.ndarray, backbone: str, sample_rate: Optional[int], splits: int = 10,
                    kind: str = "probs") -> MetricResult:
    """IS = exp(E_x KL(p(y|x) || p(y))) on each of ``splits`` consecutive splits; mean and std.

    ``outputs [N, C]`` are the classifier's outputs on the *generated* set (``kind`` as in
    :func:`posteriors`, single-label). Splits follow ``np.array_split`` (sizes differ by ≤ 1).
    """
    p = posteriors(outputs, kind)
    if p.ndim != 2:
        raise ValueError(f"IS: expected outputs [N, C], got shape {p.shape}")
    if p.shape[0] < splits:
        raise ValueError(f"IS: {p.shape[0]} clips cannot be cut into {splits} splits")
    scores = []
    for part in np.array_split(p, splits, axis=0):
        py = part.mean(axis=0, keepdims=True)  # [1, C]
        kl = rel_entr(part, np.broadcast_to(py, part.shape)).sum(axis=1)  # [n]
        scores.append(float(np.exp(kl.mean())))
    return MetricResult("IS", float(np.mean(scores)), HIGHER, backbone, sample_rate, int(p.shape[0]),
                        {"std": float(np.std(scores)), "splits": splits, "split_scores": scores})


# ----------------------------------------------------------------------------- CLAP score
def clap_score(text_emb: Mapping[str, np.ndarray], audio_emb: Mapping[str, np.ndarray], backbone: str,
               sample_rate: Optional[int]) -> MetricResult:
    """Mean cosine similarity between each key's text embedding and its audio embedding ``[D]``."""
    keys = check_same_keys(audio_emb, text_emb, "audio embeddings", "text embeddings")
    per_key: Dict[str, float] = {}
    for k in keys:
        t, a = np.asarray(text_emb[k], np.float64), np.asarray(audio_emb[k], np.float64)
        if t.ndim != 1 or t.shape != a.shape:
            raise ValueError(f"CLAP score: key {k}: expected two vectors [D] of equal size, got {t.shape}, {a.shape}")
        nt, na = np.linalg.norm(t), np.linalg.norm(a)
        if nt == 0 or na == 0 or not np.isfinite(nt * na):
            raise ValueError(f"CLAP score: key {k}: zero or non-finite embedding")
        per_key[k] = float(t @ a / (nt * na))
    return MetricResult("CLAP", float(np.mean(list(per_key.values()))), HIGHER, backbone, sample_rate,
                        len(keys), {"per_key": per_key})
