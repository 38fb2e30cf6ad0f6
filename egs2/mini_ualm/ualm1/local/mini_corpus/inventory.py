"""Inventory of the real recordings installed on the machine, with honest labels.

* asterisk prompts: real speech of one female speaker with transcripts (``silence/*`` and
  bracketed non-speech entries such as ``[ascending tones]`` are skipped);
* sound effects: freedesktop / oxygen / sound-icons files whose names say what they are
  (a fixed table below; everything else is left out), and tuxpaint stamps whose ``.txt``
  label is a short "A <thing>." phrase (a stamp without a label file is skipped, logged).

Everything is scanned in sorted order so the inventory (and thus the corpus) is the same on
every run.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
OXYGEN_DIR = Path("/usr/share/sounds")
SOUND_ICONS_DIR = Path("/usr/share/sounds/sound-icons")
TUXPAINT_REL = "tools/downloads/tuxpaint/usr/share/tuxpaint/stamps"
# tuxpaint stamp folders whose recordings are the sound of the pictured thing
TUXPAINT_DIRS = ("animals", "hobbies/music", "household", "naturalforces", "seasonal/newyears",
                 "vehicles/emergency")

MAX_PROMPT_S = 8.0
MAX_EFFECT_SOURCE_S = 9.0
MIN_SOURCE_PEAK = 1e-3  # -60 dBFS

# file -> class label; only files whose name states the sound
FREEDESKTOP_LABELS = {
    "alarm-clock-elapsed.oga": "alarm clock",
    "bell.oga": "bell",
    "camera-shutter.oga": "camera shutter",
    "phone-incoming-call.oga": "phone ringing",
    "phone-outgoing-busy.oga": "telephone busy signal",
    "phone-outgoing-calling.oga": "telephone ringback tone",
    "complete.oga": "notification sound",
    "dialog-error.oga": "notification sound",
    "dialog-warning.oga": "notification sound",
    "message-new-instant.oga": "notification sound",
    "message.oga": "notification sound",
    "service-login.oga": "notification sound",
    "service-logout.oga": "notification sound",
    "window-attention.oga": "notification sound",
}
OXYGEN_LABELS = {"Oxygen-Im-Phone-Ring.ogg": "phone ringing"}
OXYGEN_NOTIFICATION_PREFIXES = ("Oxygen-Im-", "Oxygen-Sys-", "Oxygen-K3B-")
SOUND_ICONS_LABELS = {
    "canary-long.wav": "canary",
    "cembalo-1.wav": "harpsichord note",
    "cembalo-2.wav": "harpsichord note",
    "cembalo-6.wav": "harpsichord note",
    "electric-piano-3.wav": "electric piano",
    "glass-water-1.wav": "glass of water",
    "guitar-12.wav": "guitar note",
    "guitar-13.wav": "guitar note",
    "klavichord-4.wav": "clavichord note",
    "piano-3.wav": "piano note",
    "trumpet-1.wav": "trumpet note",
    "trumpet-12.wav": "trumpet note",
    "violoncello-7.wav": "cello note",
    "xylofon.wav": "xylophone",
}
# label simplifications (the picture's colour/size words say nothing about the sound)
LABEL_SIMPLIFY = {"colorful rooster": "rooster", "brown hen": "hen", "tamworth pig": "pig",
                  "great blue heron": "heron", "mountaingoat": "mountain goat",
                  "large metal mallet": "metal mallet", "electric kettle": "kettle"}
_TUX_LABEL = re.compile(r"^(?:A|An)\s+([A-Za-z][A-Za-z \-]{1,30})\.$")


@dataclass(frozen=True)
class Prompt:
    path: str
    text: str
    duration: float


@dataclass(frozen=True)
class Effect:
    path: str
    label: str
    source: str  # freedesktop | oxygen | sound-icons | tuxpaint
    duration: float
    channels: int


def _clean_transcript(text: str) -> Optional[str]:
    text = " ".join(text.split())
    if not text or "[" in text or "]" in text or "(" in text:
        return None
    return text


def load_asterisk_prompts() -> List[Prompt]:
    """Prompts with a clean transcript, at most MAX_PROMPT_S long, sorted by file name."""
    if not ASTERISK_TRANSCRIPTS.is_file():
        raise FileNotFoundError(f"{ASTERISK_TRANSCRIPTS}: asterisk transcripts missing "
                                "(run tools/install_system.sh)")
    out: List[Prompt] = []
    with gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            name = name.strip()
            if name.startswith("silence/") or " " in name:
                continue
            text = _clean_transcript(text)
            if text is None:
                continue
            path = ASTERISK_DIR / f"{name}.wav"
            if not path.is_file():
                continue
            dur = sf.info(str(path)).duration
            if dur < 0.3 or dur > MAX_PROMPT_S:
                continue
            out.append(Prompt(str(path), text, round(dur, 3)))
    out.sort(key=lambda p: p.path)
    logger.info("asterisk: %d prompts usable", len(out))
    return out


def _effect(path: Path, label: str, source: str) -> Optional[Effect]:
    try:
        info = sf.info(str(path))
    except Exception as e:  # unreadable file: leave it out, say so
        logger.warning("effect %s unreadable (%s); skipped", path, e)
        return None
    if info.duration < 0.1 or info.duration > MAX_EFFECT_SOURCE_S:
        return None
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak < MIN_SOURCE_PEAK:  # some stamps ship a silent placeholder recording
        logger.info("effect %s is silent (peak %.1e); skipped", path, peak)
        return None
    return Effect(str(path), label, source, round(info.duration, 3), int(info.channels))


def _tuxpaint_label(txt: Path) -> Optional[str]:
    first = txt.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    if not first:
        return None
    m = _TUX_LABEL.match(first[0].strip())
    if not m:
        return None
    label = m.group(1).strip()
    if len(label.split()) > 3:
        return None
    label = label.lower()
    return LABEL_SIMPLIFY.get(label, label)


def load_effects(repo_root: Path) -> List[Effect]:
    """All labelled effect recordings, sorted by path."""
    out: List[Effect] = []
    for name, label in FREEDESKTOP_LABELS.items():
        p = FREEDESKTOP_DIR / name
        if p.is_file() and (e := _effect(p, label, "freedesktop")):
            out.append(e)
    if OXYGEN_DIR.is_dir():
        for p in sorted(OXYGEN_DIR.glob("Oxygen-*.ogg")):
            label = OXYGEN_LABELS.get(p.name)
            if label is None and p.name.startswith(OXYGEN_NOTIFICATION_PREFIXES):
                label = "notification sound"
            if label and (e := _effect(p, label, "oxygen")):
                out.append(e)
    for name, label in SOUND_ICONS_LABELS.items():
        p = SOUND_ICONS_DIR / name
        if p.is_file() and (e := _effect(p, label, "sound-icons")):
            out.append(e)
    stamps = repo_root / TUXPAINT_REL
    if stamps.is_dir():
        skipped = []
        for sub in TUXPAINT_DIRS:
            for p in sorted((stamps / sub).rglob("*.ogg")):
                if "_desc" in p.name:
                    continue  # spoken descriptions in other languages, not the sound
                txt = p.with_suffix(".txt")
                if not txt.is_file():
                    skipped.append(f"{p.relative_to(stamps)} (no label file)")
                    continue
                label = _tuxpaint_label(txt)
                if label is None:
                    skipped.append(f"{p.relative_to(stamps)} (label is not a short 'A <thing>.' phrase)")
                    continue
                if (e := _effect(p, label, "tuxpaint")):
                    out.append(e)
        for s in skipped:
            logger.info("tuxpaint stamp skipped: %s", s)
    else:
        logger.warning("%s missing: no tuxpaint effects (run tools/install_system.sh)", stamps)
    out.sort(key=lambda e: e.path)
    logger.info("effects: %d recordings, %d labels", len(out), len({e.label for e in out}))
    return out


def effects_by_label(effects: List[Effect]) -> Dict[str, List[Effect]]:
    out: Dict[str, List[Effect]] = {}
    for e in effects:
        out.setdefault(e.label, []).append(e)
    return dict(sorted(out.items()))


def default_repo_root() -> Path:
    return Path(os.environ.get("UALM_TK_ROOT", Path(__file__).resolve().parents[5]))
