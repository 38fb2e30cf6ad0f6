"""A trained component (codec, VAE, encoder, ...) saved as a self-describing directory.

Layout of ``DIR``::

    DIR/component.yaml   {"registry": "codec", "name": "mini_rvq", "conf": {...}, "meta": {...}}
    DIR/model.pth        the state dict (torch.save), written atomically

``save_component`` writes both; ``read_component`` returns the YAML contents and the state
dict, so a registry's ``load_<registry>(dir)`` can rebuild the class by name and load weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import yaml

PathLike = Union[str, os.PathLike]
CONFIG_NAME = "component.yaml"
WEIGHTS_NAME = "model.pth"


class ComponentDirError(ValueError):
    """A component directory is missing, incomplete or of the wrong registry."""


def save_component(
    out_dir: PathLike,
    registry: str,
    name: str,
    conf: Dict[str, Any],
    state_dict: Optional[Dict[str, torch.Tensor]],
    meta: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``component.yaml`` and ``model.pth`` into ``out_dir`` (created); return it.

    ``state_dict=None`` is for components whose weights live elsewhere (e.g. a Hugging Face
    directory named in ``conf``): no ``model.pth`` is written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        tmp = out / f".{WEIGHTS_NAME}.tmp{os.getpid()}"
        torch.save(state_dict, tmp)
        os.replace(tmp, out / WEIGHTS_NAME)
    doc = {
        "registry": registry,
        "name": name,
        "conf": dict(conf),
        "meta": dict(meta or {}),
        "has_weights": state_dict is not None,
    }
    tmp = out / f".{CONFIG_NAME}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=True)
    os.replace(tmp, out / CONFIG_NAME)
    return out


def read_component(
    in_dir: PathLike, registry: str, load_weights: bool = True
) -> Tuple[Dict[str, Any], Optional[Dict[str, torch.Tensor]]]:
    """Return (``component.yaml`` as dict, state dict or None); check the registry matches."""
    d = Path(in_dir)
    cfg_path = d / CONFIG_NAME
    if not d.is_dir():
        raise ComponentDirError(f"{d}: not a directory (expected a saved {registry})")
    if not cfg_path.is_file():
        raise ComponentDirError(f"{cfg_path}: missing; {d} is not a saved {registry} directory")
    with open(cfg_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for key in ("registry", "name", "conf"):
        if not isinstance(doc, dict) or key not in doc:
            raise ComponentDirError(f"{cfg_path}: key '{key}' missing")
    if doc["registry"] != registry:
        raise ComponentDirError(
            f"{cfg_path}: holds a '{doc['registry']}' component, expected a '{registry}'"
        )
    state = None
    if load_weights and doc.get("has_weights", True):
        w = d / WEIGHTS_NAME
        if not w.is_file():
            raise ComponentDirError(f"{w}: missing (weights of {registry} '{doc['name']}')")
        state = torch.load(w, map_location="cpu", weights_only=True)
    return doc, state
