"""Loading a user's local checkpoint of a standard model with strict, readable key checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import torch

PathLike = Union[str, os.PathLike]


class CheckpointKeyError(ValueError):
    """A checkpoint does not match the architecture: names missing / unexpected / mis-shaped keys."""


def read_state_dict(path: PathLike, model_name: str, wrappers: Sequence[str] = ("state_dict", "model"),
                    strip_prefixes: Sequence[str] = ("module.",)) -> Dict[str, torch.Tensor]:
    """Read a torch checkpoint file; unwrap ``{"model": sd}``-style dicts; strip DDP prefixes."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{model_name}: checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointKeyError(f"{model_name}: {p} is not a readable torch checkpoint ({e})") from e
    for w in wrappers:
        if isinstance(obj, dict) and w in obj and isinstance(obj[w], dict):
            obj = obj[w]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointKeyError(f"{model_name}: {p} does not hold a state dict (tensors by name)")
    for pre in strip_prefixes:
        if obj and all(k.startswith(pre) for k in obj):
            obj = {k[len(pre):]: v for k, v in obj.items()}
    return obj


def _fmt(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checked(module: torch.nn.Module, state: Dict[str, torch.Tensor], source: PathLike, model_name: str,
                 ignore_prefixes: Sequence[str] = (), hint: Optional[str] = None) -> None:
    """Load ``state`` into ``module`` strictly; on mismatch raise :class:`CheckpointKeyError` listing the keys.

    Keys under ``ignore_prefixes`` (fixed front-end buffers) are neither required nor taken from the file.
    """
    def kept(d):
        return {k: v for k, v in d.items() if not any(k.startswith(p) for p in ignore_prefixes)}

    own = kept(module.state_dict())
    state = kept(state)
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes[:5]))
        msg = f"{model_name}: checkpoint {source} does not match the configured architecture: " + " | ".join(parts)
        if hint:
            msg += f" ({hint})"
        raise CheckpointKeyError(msg)
    module.load_state_dict(state, strict=False)  # complete up to the ignored front-end buffers (checked above)


def read_class_labels(path: Optional[PathLike], num_classes: int, model_name: str) -> list:
    """AudioSet-style ``class_labels_indices.csv`` (``index,mid,display_name``) or a plain list, one per line.

    Without a file the names are ``class_<i>``.
    """
    if not path:
        return [f"class_{i}" for i in range(num_classes)]
    lines = [ln.rstrip("\n") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if lines and lines[0].lower().startswith("index,mid,display_name"):
        import csv
        rows = list(csv.reader(lines[1:]))
        names = [r[2] for r in rows]
    else:
        names = lines
    if len(names) != num_classes:
        raise ValueError(f"{model_name}: {path} lists {len(names)} classes, the model has {num_classes}")
    return names
