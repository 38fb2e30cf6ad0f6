"""The ``audio_encoder`` registry: ``audio_encoder: <name>`` + ``audio_encoder_conf: {...}`` in YAML.

| name | class | weights |
|---|---|---|
| ``mel_transformer`` | :class:`ualm_tk.audio_encoder.mel_transformer.MelTransformerEncoder` (ours; trains on CPU) | ``model.pth`` |
| ``whisper`` | :class:`ualm_tk.audio_encoder.whisper.WhisperEncoder` (transformers, local ``model_dir``) | stay in ``model_dir`` (``model.pth`` too when unfrozen) |
| ``mel_transformer_qa`` | :class:`ualm_tk.audio_encoder.qa_readout.QAReadoutEncoder` (``mel_transformer`` + its stage-5a heads' answers on every frame) | ``model.pth`` |

Interface (:class:`AbsAudioEncoder`): ``forward(wav [B,1,L], lengths [B]) -> (feats [B,T',D],
feat_lengths [B])`` at ``frame_rate`` = 25 frames/s, ``num_frames(num_samples)`` equal to the
task templates' ``num_feat_frames``; ``sample_rate``, ``output_size``, ``freeze()``.
:class:`AudioAdapter` and :func:`insert_features` (in :mod:`.adapter`) take the features into
the LM. A new encoder is one new file (an :class:`AbsAudioEncoder` subclass) plus one line in
``audio_encoder_choices``; ``transformers`` is imported only when a ``whisper`` encoder is built.
``audio_encoder: none`` builds no encoder (generation-only models).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from espnet2.train.class_choices import ClassChoices

from ualm_tk.audio_encoder.abs_audio_encoder import AbsAudioEncoder, AudioEncoderInputError
from ualm_tk.audio_encoder.adapter import (
    AudioAdapter, FeatureInsertionError, insert_features, pack_segments, placeholder_mask,
)
from ualm_tk.audio_encoder.mel_transformer import PRESETS, MelTransformerEncoder
from ualm_tk.audio_encoder.qa_readout import QAReadoutEncoder
from ualm_tk.audio_encoder.whisper import WhisperEncoder
from ualm_tk.utils.component_dir import ComponentDirError, read_component, save_component

REGISTRY = "audio_encoder"

audio_encoder_choices = ClassChoices(
    REGISTRY,
    classes=dict(
        mel_transformer=MelTransformerEncoder,
        whisper=WhisperEncoder,
        mel_transformer_qa=QAReadoutEncoder,
    ),
    type_check=AbsAudioEncoder,
    default="mel_transformer",
    optional=True,  # ``audio_encoder: none`` for generation-only models (UALM-Gen)
)


def audio_encoder_name(encoder: AbsAudioEncoder) -> str:
    """Registry name of an encoder instance."""
    for name, cls in audio_encoder_choices.classes.items():
        if type(encoder) is cls:
            return name
    raise ValueError(f"{type(encoder).__name__} is not registered in audio_encoder_choices")


def build_audio_encoder(name: Optional[str], conf: Optional[Dict[str, Any]] = None) -> Optional[AbsAudioEncoder]:
    """Build an encoder by registry name (e.g. from YAML ``audio_encoder`` / ``audio_encoder_conf``).

    ``None`` or ``"none"`` (a model without audio input) gives ``None``.
    """
    if name is None or name.lower() in ("none", "null", "nil"):
        return None
    cls = audio_encoder_choices.get_class(name)
    return cls(**(conf or {}))


def save_audio_encoder(
    encoder: AbsAudioEncoder, out_dir: Union[str, os.PathLike], meta: Optional[Dict[str, Any]] = None
):
    """Write ``encoder`` as a component directory (``component.yaml`` [+ ``model.pth``]).

    The conf records the encoder's current frozen state, so it is restored frozen or not as saved.
    """
    info = encoder.meta()
    info.update(meta or {})
    conf = dict(encoder.conf)
    if "freeze" in conf:
        conf["freeze"] = bool(encoder.frozen)
    state = encoder.state_dict() if encoder.saves_weights else None
    return save_component(out_dir, REGISTRY, audio_encoder_name(encoder), conf, state, info)


def load_audio_encoder(encoder_dir: Union[str, os.PathLike], device: str = "cpu") -> AbsAudioEncoder:
    """Restore an encoder saved by :func:`save_audio_encoder` (any registered class).

    A frozen encoder comes back frozen (eval mode, no grads); a trainable one in eval mode with
    grads enabled (call ``.train()`` to continue training it).
    """
    doc, state = read_component(encoder_dir, REGISTRY)
    name = doc["name"]
    if name not in audio_encoder_choices.classes:
        raise ComponentDirError(
            f"{encoder_dir}/component.yaml: unknown audio encoder '{name}' "
            f"(registered: {sorted(audio_encoder_choices.classes)})"
        )
    encoder = build_audio_encoder(name, doc["conf"])
    if state is not None:
        try:
            missing, unexpected = encoder.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise ComponentDirError(f"{encoder_dir}/model.pth does not match audio encoder '{name}': {e}") from None
        if missing or unexpected:
            raise ComponentDirError(
                f"{encoder_dir}/model.pth does not match audio encoder '{name}': "
                f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
            )
    return encoder.to(device).eval()


__all__ = [
    "AbsAudioEncoder", "AudioEncoderInputError", "MelTransformerEncoder", "QAReadoutEncoder", "WhisperEncoder", "PRESETS",
    "audio_encoder_choices", "audio_encoder_name", "build_audio_encoder", "save_audio_encoder",
    "load_audio_encoder", "AudioAdapter", "FeatureInsertionError", "insert_features", "pack_segments",
    "placeholder_mask",
]
