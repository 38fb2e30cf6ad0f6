"""Abstract base of the ``model`` registry: an ESPnet model over ``[B,S,K]`` token matrices.

``forward(**batch) -> (loss, stats, weight)`` as ESPnet's trainer requires. The batch (see
:mod:`ualm_tk.data.lm_dataset`) holds ``tokens [B,S,K]`` long, ``loss_mask [B,S,K]`` float,
``lengths [B]``, ``task_ids [B]`` and, when user-side audio is present, ``audio [N,1,L]``,
``audio_lengths [N]``, ``audio_rows [N]``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Dict

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel


class ModelInputError(ValueError):
    """A batch handed to a model is malformed (shapes, ids outside a stream's block, ...)."""


class AbsLMModel(AbsESPnetModel):
    """Interface of every model of the ``model`` registry."""

    @abstractmethod
    def forward(self, **batch: torch.Tensor):
        raise NotImplementedError

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        # no feature statistics to collect: the LM normalises nothing
        return {}
