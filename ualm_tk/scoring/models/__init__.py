"""The ``scorer`` registry: evaluator models for metrics (FD, KL, IS, CLAP score) and DPO rewards.

``scorer: <name>`` + ``scorer_conf: {...}`` in YAML; interface in :class:`AbsScorer`.

| name | class | weights | trained/tested on |
|---|---|---|---|
| ``tagger`` | :class:`Tagger` — ours, event tagger (frame + clip posteriors, embedding) | ``model.pth`` | the recipe corpus |
| ``clap_mini`` | :class:`ClapMini` — ours, text–audio contrastive | ``model.pth`` | the recipe corpus |
| ``laion_clap`` | :class:`LaionClap` — HF ``ClapModel`` from a local directory | the user's dir | tiny random stand-ins only |
| ``panns`` | :class:`PannsCnn14` — Cnn14 in torch, PANNs ``.pth`` checkpoint | the user's file | tiny stand-ins only |
| ``passt`` | :class:`Passt` — PaSST ViT in torch, state-dict checkpoint | the user's file | tiny stand-ins only |
| ``openl3`` | :class:`OpenL3` — OpenL3 mel CNN in torch, state-dict checkpoint | the user's file | tiny stand-ins only |

A trained (or configured) scorer is a component directory written by :func:`save_scorer` and
restored by :func:`load_scorer`; for the local-checkpoint slots it records only the path.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from espnet2.train.class_choices import ClassChoices

from ualm_tk.scoring.models.abs_scorer import AbsScorer, ScorerCapabilityError
from ualm_tk.scoring.models.checkpoints import CheckpointKeyError
from ualm_tk.scoring.models.clap_mini import ClapMini
from ualm_tk.scoring.models.laion_clap import LaionClap
from ualm_tk.scoring.models.openl3 import OpenL3
from ualm_tk.scoring.models.panns import PannsCnn14
from ualm_tk.scoring.models.passt import Passt
from ualm_tk.scoring.models.tagger import Tagger
from ualm_tk.utils.component_dir import ComponentDirError, read_component, save_component

REGISTRY = "scorer"

scorer_choices = ClassChoices(
    REGISTRY,
    classes=dict(
        tagger=Tagger,
        clap_mini=ClapMini,
        laion_clap=LaionClap,
        panns=PannsCnn14,
        passt=Passt,
        openl3=OpenL3,
    ),
    type_check=AbsScorer,
    default="tagger",
)


def scorer_name(scorer: AbsScorer) -> str:
    for name, cls in scorer_choices.classes.items():
        if type(scorer) is cls:
            return name
    raise ValueError(f"{type(scorer).__name__} is not registered in scorer_choices")


def build_scorer(name: str, conf: Optional[Dict[str, Any]] = None) -> AbsScorer:
    """Build by registry name (``scorer`` / ``scorer_conf`` of a YAML)."""
    cls = scorer_choices.get_class(name)
    return cls(**(conf or {}))


def save_scorer(scorer: AbsScorer, out_dir: Union[str, os.PathLike], meta: Optional[Dict[str, Any]] = None):
    info = scorer.meta()
    info.update(meta or {})
    state = scorer.state_dict() if scorer.saves_weights else None
    return save_component(out_dir, REGISTRY, scorer_name(scorer), scorer.conf, state, info)


def load_scorer(scorer_dir: Union[str, os.PathLike], device: str = "cpu") -> AbsScorer:
    """Restore a scorer saved by :func:`save_scorer`, in eval mode."""
    doc, state = read_component(scorer_dir, REGISTRY)
    name = doc["name"]
    if name not in scorer_choices.classes:
        raise ComponentDirError(
            f"{scorer_dir}/component.yaml: unknown scorer '{name}' (registered: {sorted(scorer_choices.classes)})"
        )
    scorer = build_scorer(name, doc["conf"])
    if state is not None:
        missing, unexpected = scorer.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ComponentDirError(
                f"{scorer_dir}/model.pth does not match scorer '{name}': "
                f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
            )
    return scorer.to(device).eval()


__all__ = [
    "AbsScorer", "ScorerCapabilityError", "CheckpointKeyError", "scorer_choices", "build_scorer", "save_scorer",
    "load_scorer", "scorer_name", "Tagger", "ClapMini", "LaionClap", "PannsCnn14", "Passt", "OpenL3",
]
