"""The ``vae`` registry: enhancement VAEs (16 kHz mono codec output -> 48 kHz mono/stereo).

A YAML selects ``vae: <name>`` and ``vae_conf: {...}``. A trained VAE is a component
directory (``component.yaml`` + ``model.pth``, see :mod:`ualm_tk.utils.component_dir`)
that :func:`load_vae` restores; :func:`save_vae` writes one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from espnet2.train.class_choices import ClassChoices
from espnet2.utils.get_default_kwargs import get_default_kwargs

from ualm_tk.utils.component_dir import ComponentDirError, read_component, save_component
from ualm_tk.vae.abs_vae import AbsVAE, VAEInputError
from ualm_tk.vae.residual_vae import ResidualEnhancementVAE

REGISTRY = "vae"

vae_choices = ClassChoices(
    "vae",
    classes=dict(residual_vae=ResidualEnhancementVAE),
    type_check=AbsVAE,
    default="residual_vae",
)


def build_vae(name: str, conf: Optional[Dict[str, Any]] = None) -> AbsVAE:
    """Instantiate the registered VAE ``name`` with keyword arguments ``conf``."""
    cls = vae_choices.get_class(name)  # raises ValueError naming the valid choices
    return cls(**dict(conf or {}))


def save_vae(
    vae: AbsVAE,
    out_dir: Union[str, os.PathLike],
    name: str,
    conf: Dict[str, Any],
    meta: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``vae`` (built as ``build_vae(name, conf)``) as a component directory.

    The saved conf is complete (class defaults filled in), so a later change of a default
    cannot change what a saved VAE computes.
    """
    full_conf = get_default_kwargs(vae_choices.get_class(name))
    full_conf.update(conf)
    info = dict(
        input_sample_rate=vae.input_sample_rate,
        output_sample_rate=vae.output_sample_rate,
        channels=vae.channels,
        num_parameters=sum(p.numel() for p in vae.parameters()),
    )
    info.update(meta or {})
    return save_component(out_dir, REGISTRY, name, full_conf, vae.state_dict(), info)


def load_vae(vae_dir: Union[str, os.PathLike]) -> AbsVAE:
    """Restore a VAE saved by :func:`save_vae` (eval mode, on CPU)."""
    doc, state = read_component(vae_dir, REGISTRY)
    try:
        vae = build_vae(doc["name"], doc["conf"])
    except (ValueError, TypeError) as e:
        raise ComponentDirError(f"{Path(vae_dir) / 'component.yaml'}: cannot build the VAE: {e}") from None
    try:
        vae.load_state_dict(state)
    except RuntimeError as e:
        raise ComponentDirError(
            f"{Path(vae_dir) / 'model.pth'}: weights do not fit '{doc['name']}' with the saved conf: {e}"
        ) from None
    return vae.eval()


__all__ = [
    "AbsVAE",
    "ResidualEnhancementVAE",
    "VAEInputError",
    "build_vae",
    "load_vae",
    "save_vae",
    "vae_choices",
]
