"""Perceptual quality of a degraded/decoded waveform against its reference: PESQ, STOI, ViSQOL.

For speech-like pairs (codec or VAE reconstructions, TTS against its recording). Waveforms are
``[C, L]`` or ``[L]``; they are mixed to mono (channel mean), resampled to the metric's rate with
:func:`ualm_tk.audio.resample.resample` and truncated to the shorter length.

| metric | package | rate | range / direction |
|---|---|---|---|
| PESQ | ``pesq`` (ITU-T P.862.2 wide-band) | 16 kHz | MOS-LQO ~1.04..4.64, higher is better |
| STOI | ``pystoi`` (Taal et al. 2011; ``extended`` gives ESTOI) | 10 kHz internally, fed 16 kHz | 0..1, higher is better |
| ViSQOL | ``visqol-python`` 3.8 (port of ViSQOL v3.3.3), speech mode at 16 kHz or audio mode at 48 kHz | 16 / 48 kHz | MOS-LQO 1..5, higher is better |

ViSQOL's speech mode uses the polynomial MOS mapping: the deep-lattice mapping of the C++
default needs the ``ai-edge-litert`` package, which is not installed. Audio mode uses the SVR
model shipped inside the package. Both run offline; measured here ~0.5 s per 4 s clip (the first
call in a process takes ~8 s more for set-up).
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import torch

from ualm_tk.audio.resample import resample
from ualm_tk.scoring.metrics.result import HIGHER, MetricResult

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]
PESQ_SR = 16000
VISQOL_RATES = {"speech": 16000, "audio": 48000}


class QualityMetricError(ValueError):
    """A pair cannot be scored (silent reference, too short, ...)."""


def _mono_pair(ref: ArrayLike, deg: ArrayLike, sr: int, target_sr: int) -> Tuple[np.ndarray, np.ndarray]:
    """-> two float64 mono signals ``[L]`` of equal length at ``target_sr``."""
    out = []
    for name, x in (("reference", ref), ("degraded", deg)):
        x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] == 0:
            raise QualityMetricError(f"{name} waveform must be a non-empty [C, L] or [L], got shape {x.shape}")
        mono = x.astype(np.float32).mean(axis=0, keepdims=True)  # [1, L]
        out.append(resample(mono, int(sr), target_sr)[0].astype(np.float64))
    n = min(len(out[0]), len(out[1]))
    return out[0][:n], out[1][:n]


def pesq_wb(ref: ArrayLike, deg: ArrayLike, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO) at 16 kHz."""
    from pesq import pesq
    from pesq.cypesq import PesqError

    r, d = _mono_pair(ref, deg, sample_rate, PESQ_SR)
    if len(r) < PESQ_SR // 4:
        raise QualityMetricError(f"PESQ needs at least 0.25 s of audio, got {len(r) / PESQ_SR:.3f} s")
    try:
        return float(pesq(PESQ_SR, r, d, "wb"))
    except PesqError as e:  # e.g. no utterance detected in a silent reference
        raise QualityMetricError(f"PESQ failed: {type(e).__name__}: {e}") from None


def stoi(ref: ArrayLike, deg: ArrayLike, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended``) on 16 kHz mono signals."""
    from pystoi import stoi as _stoi

    r, d = _mono_pair(ref, deg, sample_rate, PESQ_SR)
    if not np.any(r):
        raise QualityMetricError("STOI: the reference is silent")
    return float(_stoi(r, d, PESQ_SR, extended=extended))


_VISQOL = {}


def _visqol_api(mode: str):
    if mode not in VISQOL_RATES:
        raise ValueError(f"ViSQOL mode must be one of {sorted(VISQOL_RATES)}, got {mode!r}")
    if mode not in _VISQOL:
        from visqol import VisqolApi

        api = VisqolApi()
        if mode == "speech":
            api.create(mode="speech", use_lattice_model=False)
        else:
            api.create(mode="audio")
        _VISQOL[mode] = api
    return _VISQOL[mode]


def visqol(ref: ArrayLike, deg: ArrayLike, sample_rate: int, mode: str = "speech") -> float:
    """ViSQOL MOS-LQO; ``mode`` ``speech`` (16 kHz) or ``audio`` (48 kHz, music/general audio)."""
    api = _visqol_api(mode)
    r, d = _mono_pair(ref, deg, sample_rate, VISQOL_RATES[mode])
    if not np.any(r):
        raise QualityMetricError("ViSQOL: the reference is silent")
    return float(api.measure_from_arrays(r, d, VISQOL_RATES[mode]).moslqo)


def describe(name: str, values: dict, mode: Optional[str] = None) -> MetricResult:
    """Wrap per-key values of one quality metric (``PESQ``, ``STOI``, ``ESTOI``, ``ViSQOL``)."""
    backbone, sr = {
        "PESQ": ("pesq 0.0.4 (P.862.2 wide-band)", PESQ_SR),
        "STOI": ("pystoi 0.4.1", PESQ_SR),
        "ESTOI": ("pystoi 0.4.1 (extended)", PESQ_SR),
        "ViSQOL": (f"visqol-python 3.8.0 ({mode} mode)", VISQOL_RATES.get(mode or "speech")),
    }[name]
    vals = list(values.values())
    return MetricResult(name, float(np.mean(vals)), HIGHER, backbone, sr, len(vals),
                        {"std": float(np.std(vals)), "per_key": {k: float(v) for k, v in values.items()}})
