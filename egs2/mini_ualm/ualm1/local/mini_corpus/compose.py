"""Assemble one clip from its rendered events, write the master WAV and check it.

Layouts: ``single`` (lead silence, event, tail), ``sequence`` (events one after the other with
gaps), ``overlay`` (a foreground event over a quiet background that spans the whole clip).
Masters are 48 kHz 16-bit PCM, stereo when any source event is stereo, mono otherwise.
Every written file is read back and checked (duration, level, clipping, energy inside each
event); a failing clip is reported with its reason so the caller can replace or drop it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf

from . import vocab as V
from .render import RenderError, render_event

logger = logging.getLogger(__name__)
SR = V.SAMPLE_RATE

MIN_PEAK = 0.05            # a master quieter than this is "silent"
CLIP_LEVEL = 32767 / 32768  # a 16-bit sample at full scale counts as clipped
MIN_EVENT_RMS_DB = -45.0    # each event's region must carry energy
SQUEEZED_PAD_S = 0.15       # lead/tail silence when the planned pauses do not fit the clip
SQUEEZED_GAP_S = 0.25       # gap between sequence events in that case
# event fields that are generation parameters (the rest is bookkeeping)
_NOT_ATTRIBUTES = {"kind", "category", "class", "path", "max_dur", "offset", "steps", "lang", "variant"}


def _stereo(x: np.ndarray) -> np.ndarray:
    return x if x.shape[0] == 2 else np.repeat(x, 2, axis=0)


def event_record(ev: Dict, onset: float, offset: float) -> Dict:
    attrs = {k: v for k, v in ev.items() if k not in _NOT_ATTRIBUTES}
    source = ev["path"] if "path" in ev else {
        "espeak": "espeak-ng", "flite": "flite", "melody": "fluidsynth TimGM6mb.sf2",
        "drums": "fluidsynth TimGM6mb.sf2", "tone": "sox synth", "sweep": "sox synth",
        "noise": "sox synth"}[ev["kind"]]
    return {"class": ev["class"], "category": ev["category"], "onset": round(onset, 3),
            "offset": round(offset, 3), "attributes": attrs, "source": source}


def assemble(spec: Dict) -> (np.ndarray, List[Dict]):
    """spec -> (wav [C,L], event records in time order)."""
    lead, tail = spec["lead"], spec["tail"]
    rendered = [render_event(ev) for ev in spec["events"]]  # each [C,L]
    gaps = list(spec.get("gaps", []))
    content = sum(x.shape[1] for x in rendered) / SR
    if lead + sum(gaps) + content + tail > V.MAX_CLIP_S:
        # too long with the planned pauses: tighten the pauses (never the content)
        lead, tail, gaps = min(lead, SQUEEZED_PAD_S), min(tail, SQUEEZED_PAD_S), [min(g, SQUEEZED_GAP_S) for g in gaps]
    records: List[Dict] = []
    pieces = []
    t = lead
    for i, (ev, x) in enumerate(zip(spec["events"], rendered)):
        if i > 0:
            t += gaps[i - 1]
        n = x.shape[1]
        records.append(event_record(ev, t, t + n / SR))
        pieces.append((int(round(t * SR)), x))
        t += n / SR
    total = max(V.MIN_CLIP_S, t + tail)
    if total > V.MAX_CLIP_S:
        raise RenderError(f"content needs {total:.2f} s, more than the {V.MAX_CLIP_S} s clip limit")
    length = int(round(total * SR))
    bg = spec.get("background")
    if bg is not None:
        bg = dict(bg, dur=round(length / SR, 3))
        xb = render_event(bg)[:, :length]
        fg_rms = float(np.sqrt(np.mean(rendered[0].astype(np.float64) ** 2)))
        bg_rms = float(np.sqrt(np.mean(xb.astype(np.float64) ** 2)))
        xb = xb * (fg_rms * 10 ** (V.OVERLAY_BACKGROUND_DB / 20) / bg_rms)
        records.insert(0, event_record(bg, 0.0, xb.shape[1] / SR))
        pieces.insert(0, (0, xb.astype(np.float32)))
    channels = 2 if any(x.shape[0] == 2 for _, x in pieces) else 1
    out = np.zeros((channels, length), dtype=np.float32)
    for start, x in pieces:
        x = _stereo(x) if channels == 2 else x
        out[:, start:start + x.shape[1]] += x[:, : length - start]
    peak = float(np.max(np.abs(out)))
    if peak > V.PEAK_LIMIT:
        out *= V.PEAK_LIMIT / peak
    if bg is not None:
        records[0]["attributes"]["relative_level_db"] = V.OVERLAY_BACKGROUND_DB
        records[0]["attributes"]["role"] = "background"
        records[1]["attributes"]["role"] = "foreground"
    return out, records


def check_master(path: Path, records: List[Dict], channels: int) -> Dict:
    """Read the written master back; raise RenderError naming what is wrong."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [L,C]
    if sr != SR:
        raise RenderError(f"{path}: sample rate {sr}, expected {SR}")
    if x.shape[1] != channels:
        raise RenderError(f"{path}: {x.shape[1]} channels, expected {channels}")
    dur = x.shape[0] / SR
    if not (V.MIN_CLIP_S - 1e-3 <= dur <= V.MAX_CLIP_S + 1e-3):
        raise RenderError(f"{path}: duration {dur:.3f} s outside [{V.MIN_CLIP_S}, {V.MAX_CLIP_S}]")
    peak = float(np.max(np.abs(x)))
    if peak < MIN_PEAK:
        raise RenderError(f"{path}: silent (peak {peak:.4f} < {MIN_PEAK})")
    n_clip = int(np.sum(np.abs(x) >= CLIP_LEVEL))
    if n_clip:
        raise RenderError(f"{path}: {n_clip} clipped samples")
    for r in records:
        seg = x[int(r["onset"] * SR): int(r["offset"] * SR)]
        rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0
        rms_db = 20 * np.log10(max(rms, 1e-10))
        if rms_db < MIN_EVENT_RMS_DB:
            raise RenderError(f"{path}: event '{r['class']}' at {r['onset']}-{r['offset']} s "
                              f"has rms {rms_db:.1f} dBFS < {MIN_EVENT_RMS_DB}")
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return {"duration": round(dur, 3), "peak": round(peak, 4), "rms_db": round(20 * np.log10(rms), 2)}


def render_clip(job) -> Dict:
    """Worker entry: (spec, wav_dir) -> result dict; never raises for a bad clip."""
    spec, wav_dir = job
    path = Path(wav_dir) / f"{spec['utt']}.wav"
    try:
        wav, records = assemble(spec)  # wav [C,L]
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.wav")
        sf.write(str(tmp), wav.T, SR, subtype="PCM_16")
        os.replace(tmp, path)
        qc = check_master(path, records, wav.shape[0])
    except RenderError as e:
        if path.exists():
            path.unlink()
        return {"utt": spec["utt"], "ok": False, "reason": str(e)}
    return {"utt": spec["utt"], "ok": True, "path": str(path.resolve()), "channels": int(wav.shape[0]),
            "events": records, **qc}
