"""Base of the scorers the toolkit trains itself on a recipe's corpus (``tagger``, ``clap_mini``).

They share the fixed :class:`LogMel` front end (so log-mels are cached once) and the
:class:`ConvTransformerBackbone`; the training loop (:mod:`ualm_tk.scoring.models.training`)
only needs ``conf_from_data`` (fill data-derived settings such as the class list or the text
vocabulary) and ``loss``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Dict, Sequence, Tuple

import torch

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.corpus import Clip
from ualm_tk.scoring.models.frontend import LogMel


class TrainableScorer(AbsScorer):
    frontend: LogMel

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @classmethod
    @abstractmethod
    def conf_from_data(cls, conf: Dict[str, Any], clips: Sequence[Clip]) -> Dict[str, Any]:
        """Return ``conf`` completed with what the training data defines."""

    @abstractmethod
    def loss(self, feats: torch.Tensor, lengths: torch.Tensor, clips: Sequence[Clip]
             ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """``feats [B, n_mels, N]`` cached log-mels of ``clips`` -> (loss, stats)."""

    def after_training(self, valid_clips: Sequence[Clip], valid_feats: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        """Hook run by ``scorer_train`` on the validation set once training ends (e.g. threshold choice)."""
        return {}

    def features(self, wav, sr: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """One clip -> ``feats [1, n_mels, N]``, ``lengths [1]``."""
        x = self.prepare(wav, sr)
        feats = self.frontend(x[None])
        return feats, torch.tensor([feats.shape[2]], device=feats.device)
