"""The ``model`` registry: ``model: ualm`` + ``model_conf: {...}`` in YAML.

| name | class |
|---|---|
| ``ualm`` | :class:`ualm_tk.models.ualm.UALMModel` (summed stream embeddings in, hidden + stream embedding through one shared head out, restricted softmax per stream) |

Interface (:class:`AbsLMModel`, an ESPnet ``AbsESPnetModel``): ``forward(**batch) -> (loss,
stats, weight)``. The task (:mod:`ualm_tk.tasks.ualm`) builds the decoder, audio encoder and
pattern from their registries and hands them to the model class with ``model_conf``.
"""

from __future__ import annotations

from espnet2.train.class_choices import ClassChoices

from ualm_tk.models.abs_model import AbsLMModel, ModelInputError
from ualm_tk.models.ualm import TASK_IDS, TASK_NAMES, UALMModel

REGISTRY = "model"

model_choices = ClassChoices(
    REGISTRY,
    classes=dict(ualm=UALMModel),
    type_check=AbsLMModel,
    default="ualm",
)

__all__ = ["AbsLMModel", "ModelInputError", "UALMModel", "TASK_IDS", "TASK_NAMES", "model_choices"]
