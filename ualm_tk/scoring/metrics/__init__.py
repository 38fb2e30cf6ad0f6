"""Evaluation metrics, one module per family.

* :mod:`.distribution` — Fréchet distance, paired KL, Inception Score, CLAP score (on embeddings/posteriors)
* :mod:`.events` — event accuracy (recall/precision) and event-order accuracy from a tagger's frame posteriors
* :mod:`.captions` — BLEU-1..4, METEOR, ROUGE-L, CIDEr through pycocoevalcap (SPICE is not available offline)
* :mod:`.quality` — PESQ, STOI, ViSQOL for speech-like reference/degraded pairs
* :mod:`.result` — :class:`MetricResult` (value + backbone + sample rate + direction) and strict key pairing

Reconstruction distances (mel, MR-STFT, SI-SDR, LSD) live in :mod:`ualm_tk.scoring.reconstruction`.
"""

from ualm_tk.scoring.metrics.result import HIGHER, LOWER, KeyMismatchError, MetricResult, check_same_keys

__all__ = ["HIGHER", "LOWER", "KeyMismatchError", "MetricResult", "check_same_keys"]
