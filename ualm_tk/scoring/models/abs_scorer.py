"""Abstract base of the ``scorer`` registry: evaluator models used by the metrics and DPO rewards.

Every scorer takes one clip ``wav`` (``[L]``, ``[C, L]`` or ``[1, C, L]``, any sample rate: it is
mixed to mono and resampled to the scorer's own ``sample_rate``) and offers what it can:

| method | returns | who has it |
|---|---|---|
| ``embed(wav, sr)`` | ``np.ndarray [E]`` clip embedding (for Fréchet distance) | all |
| ``clip_posteriors(wav, sr)`` | ``(probs [C], class_names)`` | taggers/classifiers |
| ``frame_posteriors(wav, sr)`` | ``(probs [T, C], frame_rate, class_names)`` | frame-level taggers |
| ``embed_audio(wav, sr)`` / ``embed_text(text)`` | unit-norm ``[E]`` in a joint space | text–audio models |
| ``score(text, wav, sr)`` | cosine of the two (CLAP score) | text–audio models |

``capabilities`` lists the optional ones a scorer implements; calling a missing one raises
:class:`ScorerCapabilityError` naming the scorer and what it can do instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ualm_tk.scoring.models.frontend import resample, to_mono_tensor

OPTIONAL = ("clip_posteriors", "frame_posteriors", "embed_audio", "embed_text")


class ScorerCapabilityError(NotImplementedError):
    """The scorer does not provide the requested output."""


class AbsScorer(torch.nn.Module, ABC):
    """Base class; subclasses set ``self.conf`` (their constructor kwargs) in ``__init__``."""

    saves_weights: bool = True  # False: weights stay in a user's checkpoint named in ``conf``
    conf: Dict[str, Any]

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Rate the model runs at (input is resampled to it)."""

    @abstractmethod
    def embed(self, wav, sr: int) -> np.ndarray:
        """Clip embedding ``[E]`` (float32) for Fréchet distance."""

    # ---- optional outputs -------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        raise ScorerCapabilityError(f"{type(self).__name__} is not a classifier")

    def clip_posteriors(self, wav, sr: int) -> Tuple[np.ndarray, List[str]]:
        raise self._missing("clip_posteriors")

    def frame_posteriors(self, wav, sr: int) -> Tuple[np.ndarray, float, List[str]]:
        raise self._missing("frame_posteriors")

    def embed_audio(self, wav, sr: int) -> np.ndarray:
        raise self._missing("embed_audio")

    def embed_text(self, text: str) -> np.ndarray:
        raise self._missing("embed_text")

    def score(self, text: str, wav, sr: int) -> float:
        """Cosine between ``embed_text(text)`` and ``embed_audio(wav)`` (both unit norm)."""
        return float(np.dot(self.embed_text(text), self.embed_audio(wav, sr)))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, E]``; subclasses may batch."""
        return np.stack([self.embed_text(t) for t in texts])

    # ---- helpers ---------------------------------------------------------------------
    @property
    def capabilities(self) -> List[str]:
        return [m for m in OPTIONAL if getattr(type(self), m) is not getattr(AbsScorer, m)]

    def _missing(self, what: str) -> ScorerCapabilityError:
        return ScorerCapabilityError(
            f"scorer {type(self).__name__} has no {what}(); it provides embed() and {self.capabilities}"
        )

    def prepare(self, wav, sr: int) -> torch.Tensor:
        """Any clip -> mono float ``[L]`` at ``self.sample_rate`` on the model's device."""
        x = resample(to_mono_tensor(wav), int(sr), self.sample_rate)
        dev = next(self.parameters()).device if any(True for _ in self.parameters()) else "cpu"
        return x.to(dev)

    def meta(self) -> Dict[str, Any]:
        return {"sample_rate": self.sample_rate, "capabilities": self.capabilities}
