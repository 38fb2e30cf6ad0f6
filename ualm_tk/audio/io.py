"""Reading and writing audio files through ``soundfile`` (wav, flac, ogg, ...).

Arrays are channel-first: ``wav [C, L]`` float32 in [-1, 1] (float files may hold other values;
see :mod:`ualm_tk.audio.checks`). Every failure is an :class:`AudioError` naming the file and
what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import soundfile as sf

PathLike = Union[str, os.PathLike]

# file extension -> libsndfile major format
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
# integer subtypes: samples outside [-1, 1] would wrap around in libsndfile, so they are clipped
_INT_SUBTYPES = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"}


class AudioError(RuntimeError):
    """An audio file cannot be read or written; the message names the file and the reason."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _decoder_message(path: PathLike, err: Exception) -> str:
    """libsndfile errors repeat the path ("Error opening 'x': ..."); keep only the reason."""
    msg = _one_line(err)
    p = str(path)
    for prefix in (f"Error opening {p!r}: ", f"Error opening '{p}': ", f"Error opening {p}: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def format_for_path(path: PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in _FORMATS:
        raise AudioError(path, f"unsupported extension {ext!r} (use one of {sorted(_FORMATS)})")
    return _FORMATS[ext]


def audio_info(path: PathLike) -> sf._SoundFileInfo:
    """Header information (``samplerate``, ``channels``, ``frames``) without decoding."""
    if not os.path.exists(path):
        raise AudioError(path, "file does not exist")
    try:
        return sf.info(str(path))
    except Exception as e:  # libsndfile raises several error types
        raise AudioError(path, _decoder_message(path, e)) from None


def load_audio(path: PathLike) -> Tuple[np.ndarray, int]:
    """Decode a whole file. Returns ``(wav [C, L] float32, sample_rate)``."""
    if not os.path.exists(path):
        raise AudioError(path, "file does not exist")
    if not os.path.isfile(path):
        raise AudioError(path, "not a regular file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # data [L, C]
    except Exception as e:
        raise AudioError(path, _decoder_message(path, e)) from None
    return np.ascontiguousarray(data.T), int(sr)


def save_audio(
    path: PathLike,
    wav: np.ndarray,
    sample_rate: int,
    subtype: Optional[str] = "PCM_16",
    atomic: bool = True,
) -> int:
    """Write ``wav [C, L]`` (or ``[L]``) to ``path``; the format follows the extension.

    Integer subtypes get the signal clipped to [-1, 1] first (libsndfile would wrap around).
    With ``atomic`` the file is written under a temporary name and renamed, so a killed job
    never leaves a truncated file under the final name. Returns the number of clipped samples.
    """
    fmt = format_for_path(path)
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None, :]
    if wav.ndim != 2:
        raise AudioError(path, f"expected an array [C, L], got shape {tuple(wav.shape)}")
    if wav.shape[0] < 1 or wav.shape[0] > 64:
        raise AudioError(path, f"implausible channel count {wav.shape[0]} (array must be [C, L])")
    clipped = 0
    if subtype is not None and subtype.upper() in _INT_SUBTYPES:
        over = np.abs(wav) > 1.0
        clipped = int(over.sum())
        if clipped:
            wav = np.clip(wav, -1.0, 1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.tmp{os.getpid()}") if atomic else path
    try:
        sf.write(str(target), wav.T, int(sample_rate), subtype=subtype, format=fmt)
        if atomic:
            os.replace(target, path)
    except Exception as e:
        if atomic and target.exists():
            target.unlink()
        raise AudioError(path, f"cannot write: {_one_line(e)}") from None
    return clipped
