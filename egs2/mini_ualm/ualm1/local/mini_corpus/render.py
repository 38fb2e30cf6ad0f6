"""Render one event spec to audio at 48 kHz: ``wav [C,L]`` float32, C = 1 or 2.

Each renderer runs the real tool (espeak-ng, flite, fluidsynth, sox) or reads the real
recording, converts it to 48 kHz, cuts only the tool's own leading/trailing digital silence
(never the content) and normalises the level. A renderer never shortens speech; content is
chosen shorter than the clip by the planner instead.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tempfile
from math import gcd
from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from . import vocab as V

logger = logging.getLogger(__name__)

SF2 = "/usr/share/sounds/sf2/TimGM6mb.sf2"
SR = V.SAMPLE_RATE


class RenderError(RuntimeError):
    """A tool failed or produced unusable audio for an event spec."""


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, **kw)
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip()[-400:]
        raise RenderError(f"{cmd[0]} exited with {res.returncode}: {err}")
    return res


def to_48k(x: np.ndarray, sr: int) -> np.ndarray:
    """x [C,L] at sr -> [C,L'] at 48 kHz."""
    if sr == SR:
        return x.astype(np.float32)
    g = gcd(SR, sr)
    return resample_poly(x, SR // g, sr // g, axis=1).astype(np.float32)


def read_audio(path_or_bytes) -> np.ndarray:
    """Any file soundfile reads -> [C,L] float32 at 48 kHz."""
    data, sr = sf.read(path_or_bytes, dtype="float32", always_2d=True)  # [L,C]
    return to_48k(data.T, sr)


def trim_edges(x: np.ndarray, rel_db: float = -50.0, margin_s: float = 0.02) -> np.ndarray:
    """Cut leading/trailing samples quieter than rel_db below the peak (tool padding only)."""
    env = np.max(np.abs(x), axis=0)  # [L]
    peak = float(env.max()) if env.size else 0.0
    if peak <= 0.0:
        raise RenderError("rendered audio is digital silence")
    idx = np.nonzero(env > peak * 10 ** (rel_db / 20))[0]
    m = int(margin_s * SR)
    a, b = max(0, idx[0] - m), min(x.shape[1], idx[-1] + 1 + m)
    return x[:, a:b]


def normalise(x: np.ndarray, target_db: float = V.TARGET_RMS_DB, peak_limit: float = V.PEAK_LIMIT) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    peak = float(np.max(np.abs(x)))
    if rms <= 1e-6:
        raise RenderError(f"audio too quiet to normalise (rms {rms:.2e})")
    gain = min(10 ** (target_db / 20) / rms, peak_limit / peak)
    return (x * gain).astype(np.float32)


def fade(x: np.ndarray, in_s: float = 0.005, out_s: float = 0.005) -> np.ndarray:
    x = x.copy()
    n_in, n_out = min(int(in_s * SR), x.shape[1] // 2), min(int(out_s * SR), x.shape[1] // 2)
    if n_in:
        x[:, :n_in] *= np.linspace(0, 1, n_in, dtype=np.float32)
    if n_out:
        x[:, -n_out:] *= np.linspace(1, 0, n_out, dtype=np.float32)
    return x


# --- speech ------------------------------------------------------------------------------------
def render_espeak(ev: Dict, tmp: Path) -> np.ndarray:
    out = tmp / "espeak.wav"
    voice = f"{ev['lang']}+{ev['variant']}"
    _run(["espeak-ng", "-v", voice, "-s", str(V.ESPEAK_SPEED_WPM[ev["speed"]]),
          "-p", str(V.ESPEAK_PITCH[ev["pitch"]]), "-w", str(out), ev["text"]])
    return read_audio(str(out))


def render_flite(ev: Dict, tmp: Path) -> np.ndarray:
    out = tmp / "flite.wav"
    _run(["flite", "-voice", ev["voice"], "--setf", f"duration_stretch={V.FLITE_STRETCH[ev['speed']]}",
          "-t", ev["text"], "-o", str(out)])
    return read_audio(str(out))


def render_recording(ev: Dict, tmp: Path) -> np.ndarray:
    x = read_audio(ev["path"])
    max_dur = ev.get("max_dur")
    if max_dur and x.shape[1] > int(max_dur * SR):
        # only non-speech effects get a max_dur: shortened with a fade-out, never speech
        x = fade(x[:, : int(max_dur * SR)], out_s=0.05)
    return x


# --- music -------------------------------------------------------------------------------------
def _render_midi(mid, tmp: Path) -> np.ndarray:
    mpath, wpath = tmp / "x.mid", tmp / "x.wav"
    mid.save(str(mpath))
    _run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", str(SR), "-T", "wav",
          "-F", str(wpath), SF2, str(mpath)])
    return read_audio(str(wpath))


def melody_notes(ev: Dict):
    """MIDI note numbers of the melody: scale degrees walked up (rising) or down (falling)."""
    root = V.KEYS[ev["key"]]
    degrees = [0]
    for step in ev["steps"]:
        degrees.append(degrees[-1] + step)
    if ev["direction"] == "falling":
        degrees = degrees[::-1]
    def pitch(d):
        octave, deg = divmod(d, 7)
        return root + 12 * octave + V.MAJOR_SCALE[deg]
    return [pitch(d) for d in degrees]


def render_melody(ev: Dict, tmp: Path) -> np.ndarray:
    import mido
    tpb = 480
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(V.TEMPO_BPM[ev["tempo"]])))
    tr.append(mido.Message("program_change", program=V.INSTRUMENTS[ev["instrument"]], channel=0))
    for n in melody_notes(ev):
        tr.append(mido.Message("note_on", note=n, velocity=96, channel=0, time=0))
        tr.append(mido.Message("note_off", note=n, velocity=0, channel=0, time=int(tpb * 0.9)))
        tr.append(mido.Message("note_off", note=n, velocity=0, channel=0, time=int(tpb * 0.1)))
    # a silent beat at the end lets the last note's release render inside the file
    tr.append(mido.MetaMessage("end_of_track", time=tpb))
    return _render_midi(mid, tmp)


def render_drums(ev: Dict, tmp: Path) -> np.ndarray:
    import mido
    tpb = 480
    step = tpb // 4
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(V.TEMPO_BPM[ev["tempo"]])))
    pattern = V.DRUM_PATTERNS[ev["pattern"]]
    hits = []  # (tick, note)
    for bar in range(ev["bars"]):
        for note, steps in pattern.items():
            for s in steps:
                hits.append(((bar * 16 + s) * step, note))
    hits.sort()
    now = 0
    for tick, note in hits:
        tr.append(mido.Message("note_on", note=note, velocity=100, channel=9, time=tick - now))
        now = tick
    tr.append(mido.MetaMessage("end_of_track", time=step + tpb))
    return _render_midi(mid, tmp)


# --- sox synthesis -----------------------------------------------------------------------------
def _sox_synth(args, dur: float) -> np.ndarray:
    res = _run(["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "32", "-e", "float", "-t", "wav", "-",
                "synth", f"{dur:.3f}"] + args)
    return read_audio(io.BytesIO(res.stdout))


def render_tone(ev: Dict, tmp: Path) -> np.ndarray:
    return fade(_sox_synth([V.WAVEFORMS[ev["waveform"]], str(ev["freq"])], ev["dur"]), 0.02, 0.02)


def render_sweep(ev: Dict, tmp: Path) -> np.ndarray:
    return fade(_sox_synth([V.WAVEFORMS[ev["waveform"]], f"{ev['f0']}:{ev['f1']}"], ev["dur"]), 0.02, 0.02)


_NOISE_CACHE: Dict[str, np.ndarray] = {}
_NOISE_BANK_S = 20.0


def render_noise(ev: Dict, tmp: Path) -> np.ndarray:
    colour = ev["colour"]
    if colour not in _NOISE_CACHE:  # sox -R is repeatable: one bank per colour, cut at an offset
        _NOISE_CACHE[colour] = _sox_synth([V.NOISE_COLOURS[colour]], _NOISE_BANK_S)
    bank = _NOISE_CACHE[colour]
    n = int(ev["dur"] * SR)
    off = int(ev["offset"] * (bank.shape[1] - n))
    x = bank[:, off:off + n].copy()
    if ev["envelope"] == "fading in":
        x *= np.linspace(0.02, 1.0, n, dtype=np.float32) ** 2
    elif ev["envelope"] == "fading out":
        x *= np.linspace(1.0, 0.02, n, dtype=np.float32) ** 2
    return fade(x, 0.02, 0.02)


RENDERERS = {
    "espeak": render_espeak, "flite": render_flite, "asterisk": render_recording,
    "effect": render_recording, "melody": render_melody, "drums": render_drums,
    "tone": render_tone, "sweep": render_sweep, "noise": render_noise,
}
# kinds whose own edge silence is cut (synthetic/recorded sources with padding)
TRIMMED = {"espeak", "flite", "asterisk", "effect", "melody", "drums"}


def render_event(ev: Dict) -> np.ndarray:
    """Event spec -> normalised wav [C,L] at 48 kHz."""
    try:
        with tempfile.TemporaryDirectory(prefix="mini_corpus_") as d:
            x = RENDERERS[ev["kind"]](ev, Path(d))
        if ev["kind"] in TRIMMED:
            x = trim_edges(x)
        if x.shape[1] < int(0.05 * SR):
            raise RenderError(f"only {x.shape[1]} samples")
        return normalise(x)
    except RenderError as e:
        where = ev.get("path") or ev.get("text") or ""
        raise RenderError(f"{ev['kind']} event '{ev['class']}' ({where}): {e}") from None
