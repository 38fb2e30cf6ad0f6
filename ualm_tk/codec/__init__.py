"""The ``codec`` registry: ``codec: <name>`` + ``codec_conf: {...}`` in YAML.

| name | class | weights |
|---|---|---|
| ``mini_rvq`` | :class:`ualm_tk.codec.mini_rvq.MiniRVQCodec` (trains on CPU) | ``model.pth`` |
| ``espnet_gan`` | :class:`ualm_tk.codec.espnet_gan.ESPnetGANCodec` (SoundStream/EnCodec/DAC) | ``model.pth`` |
| ``xcodec`` | :class:`ualm_tk.codec.xcodec.XCodec` (transformers, local dir) | stay in ``model_dir`` |

A new codec is one new file (an :class:`AbsCodec` subclass) plus one line in ``codec_choices``.
A trained codec is a component directory (``component.yaml`` + ``model.pth``) written by
:func:`save_codec` and restored by :func:`load_codec`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from espnet2.train.class_choices import ClassChoices

from ualm_tk.codec.abs_codec import AbsCodec, CodecInputError
from ualm_tk.codec.espnet_gan import ESPnetGANCodec
from ualm_tk.codec.mini_rvq import MiniRVQCodec
from ualm_tk.codec.xcodec import XCodec
from ualm_tk.utils.component_dir import ComponentDirError, read_component, save_component

REGISTRY = "codec"

codec_choices = ClassChoices(
    REGISTRY,
    classes=dict(
        mini_rvq=MiniRVQCodec,
        espnet_gan=ESPnetGANCodec,
        xcodec=XCodec,
    ),
    type_check=AbsCodec,
    default="mini_rvq",
)


def codec_name(codec: AbsCodec) -> str:
    """Registry name of a codec instance."""
    for name, cls in codec_choices.classes.items():
        if type(codec) is cls:
            return name
    raise ValueError(f"{type(codec).__name__} is not registered in codec_choices")


def build_codec(name: str, conf: Optional[Dict[str, Any]] = None) -> AbsCodec:
    """Build a codec by registry name (e.g. from YAML ``codec`` / ``codec_conf``)."""
    cls = codec_choices.get_class(name)
    return cls(**(conf or {}))


def save_codec(codec: AbsCodec, out_dir: Union[str, os.PathLike], meta: Optional[Dict[str, Any]] = None):
    """Write ``codec`` as a component directory; ``meta`` adds to the codec's own facts."""
    info = codec.meta()
    info.update(meta or {})
    state = codec.state_dict() if codec.saves_weights else None
    return save_component(out_dir, REGISTRY, codec_name(codec), codec.conf, state, info)


def load_codec(codec_dir: Union[str, os.PathLike], device: str = "cpu") -> AbsCodec:
    """Restore a codec saved by :func:`save_codec` (any registered class), in eval mode."""
    doc, state = read_component(codec_dir, REGISTRY)
    name = doc["name"]
    if name not in codec_choices.classes:
        raise ComponentDirError(
            f"{codec_dir}/component.yaml: unknown codec '{name}' (registered: {sorted(codec_choices.classes)})"
        )
    codec = build_codec(name, doc["conf"])
    if state is not None:
        missing, unexpected = codec.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ComponentDirError(
                f"{codec_dir}/model.pth does not match codec '{name}': "
                f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
            )
    return codec.to(device).eval()


__all__ = [
    "AbsCodec", "CodecInputError", "codec_choices", "build_codec", "save_codec", "load_codec",
    "codec_name", "MiniRVQCodec", "ESPnetGANCodec", "XCodec",
]
