"""Captions and rich captions composed only from the generation parameters of each event.

Every word of a caption comes from an event record's attributes (or fixed template words),
so the caption is true by construction. A seeded per-clip style number picks one of a few
phrasings.
"""

from __future__ import annotations

import json
from typing import Dict, List

from . import vocab as V

SPEED_ADV = {"slow": "slowly", "normal": "at a normal pace", "fast": "quickly"}
SPEED_ADJ = {"slow": "slow", "normal": "normal-paced", "fast": "fast"}
ENVELOPE_PHRASE = {"steady": "at a steady level", "fading in": "fading in", "fading out": "fading out"}
DRUM_KIT = {"backbeat": "kick, snare and hi-hat", "four-on-the-floor": "kick, hand clap and hi-hat",
            "half-time": "kick, snare and hi-hat"}


def a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _attrs(ev: Dict) -> Dict:
    return ev["attributes"]


def sentence(ev: Dict, style: int) -> str:
    """A full caption (without final period) for one event."""
    at, cat, kind = _attrs(ev), ev["category"], _kind(ev)
    if kind == "synth_speech":
        g, acc, txt, sp = at["gender"], at["accent"], at["text"], at["speed"]
        if "pitch" in at:
            p = f"{at['pitch']}-pitched"
            forms = [f'{cap(a(p))} synthetic {g} voice with {a(acc)} accent says "{txt}" {SPEED_ADV[sp]}',
                     f'{cap(SPEED_ADJ[sp])} synthetic speech: {a(g)} voice with {a(acc)} accent, {p}, saying "{txt}"',
                     f'Someone says "{txt}" {SPEED_ADV[sp]} in {a(p)}, {g}, {acc}-accented synthetic voice']
        else:
            forms = [f'A synthetic {g} voice with {a(acc)} accent says "{txt}" {SPEED_ADV[sp]}',
                     f'{cap(SPEED_ADJ[sp])} synthetic speech: {a(g)} voice with {a(acc)} accent saying "{txt}"',
                     f'Someone says "{txt}" {SPEED_ADV[sp]} in {a(g)}, {acc}-accented synthetic voice']
    elif kind == "real_speech":
        txt = at["text"]
        forms = [f'A woman says "{txt}" in a telephone-quality recording',
                 f'Recorded speech of a female speaker, band-limited like a phone line: "{txt}"',
                 f'A recorded female voice says: "{txt}"']
    elif kind == "melody":
        i, d, t, k, n = at["instrument"], at["direction"], at["tempo"], at["key"], at["notes"]
        updown = "up" if d == "rising" else "down"
        forms = [f"{cap(a(i))} plays {a(d)} melody at {a(t)} tempo",
                 f"{cap(a(d))} {n}-note melody on {a(i)}, {t} tempo, in {k} major",
                 f"{cap(a(i))} melody moving {updown} the {k} major scale at {V.TEMPO_BPM[t]} beats per minute"]
    elif kind == "drums":
        p, t = at["pattern"], at["tempo"]
        forms = [f"A drum kit plays {a(p)} pattern at {a(t)} tempo",
                 f"{cap(a(t))} {p} drum pattern with {DRUM_KIT[p]}",
                 f"{cap(a(p))} rhythm on drums at {V.TEMPO_BPM[t]} beats per minute"]
    elif kind == "tone":
        w, f = at["waveform"], at["freq"]
        forms = [f"A steady {w} tone at {f} hertz", f"A {f} Hz {w} wave",
                 f"A constant {w}-wave tone of {f} Hz"]
    elif kind == "sweep":
        w, d, f0, f1 = at["waveform"], at["direction"], at["f0"], at["f1"]
        updown = "up" if d == "rising" else "down"
        forms = [f"A {w} tone sweeping {updown} from {f0} to {f1} hertz",
                 f"{cap(a(d))} {w} sweep from {f0} Hz to {f1} Hz"]
    elif kind == "noise":
        c, e = at["colour"], at["envelope"]
        forms = [f"{cap(c)} noise {ENVELOPE_PHRASE[e]}", f"A hiss of {c} noise {ENVELOPE_PHRASE[e]}"]
    else:  # effect
        lab = at["label"]
        if lab == "notification sound":
            forms = ["A computer notification sound", "A short notification sound from a desktop sound theme"]
        else:
            forms = [f"The sound of {a(lab)}", f"A recording of {a(lab)}"]
    return forms[style % len(forms)]


def noun_phrase(ev: Dict) -> str:
    """Short phrase for one event inside a composition."""
    at, kind = _attrs(ev), _kind(ev)
    if kind == "synth_speech":
        return f'a synthetic {at["gender"]} voice saying "{at["text"]}"'
    if kind == "real_speech":
        return f'a woman saying "{at["text"]}"'
    if kind == "melody":
        return f"{a(at['direction'])} {at['instrument']} melody"
    if kind == "drums":
        return f"{a(at['tempo'])} {at['pattern']} drum beat"
    if kind == "tone":
        return f"a {at['freq']} Hz {at['waveform']} tone"
    if kind == "sweep":
        return f"{a(at['direction'])} {at['waveform']} sweep"
    if kind == "noise":
        e = at["envelope"]
        return f"{at['colour']} noise" + ("" if e == "steady" else f" {e}")
    lab = at["label"]
    return "a notification sound" if lab == "notification sound" else f"the sound of {a(lab)}"


def background_phrase(ev: Dict) -> str:
    at, kind = _attrs(ev), _kind(ev)
    if kind == "noise":
        return f"quiet {at['colour']} noise"
    if kind == "tone":
        return f"a quiet {at['freq']} Hz {at['waveform']} tone"
    return "a quiet " + noun_phrase(ev).split(" ", 1)[1]


def _kind(ev: Dict) -> str:
    cat, at = ev["category"], ev["attributes"]
    if cat == "speech_synth":
        return "synth_speech"
    if cat == "speech_real":
        return "real_speech"
    if cat == "instrument":
        return "melody"
    if cat == "tone":
        return "sweep" if "f0" in at else "tone"
    return cat  # drums, noise, effect


def _end(s: str) -> str:
    """Close a sentence with a period unless a quotation already ends it."""
    return s if s.endswith(('."', '?"', '!"')) else s + "."


def caption(layout: str, events: List[Dict], style: int) -> str:
    """events in time order (an overlay's background first)."""
    if layout == "single":
        return _end(sentence(events[0], style))
    if layout == "sequence":
        nps = [noun_phrase(e) for e in events]
        if len(nps) == 2:
            forms = [f"{cap(nps[0])}, then {nps[1]}", f"First {nps[0]}; after that, {nps[1]}",
                     f"{cap(nps[0])}, followed by {nps[1]}"]
        else:
            forms = [f"{cap(nps[0])}, then {nps[1]}, then {nps[2]}",
                     f"First {nps[0]}, next {nps[1]}, and finally {nps[2]}",
                     f"{cap(nps[0])}, followed by {nps[1]} and then {nps[2]}"]
        return _end(forms[style % len(forms)])
    if layout == "overlay":
        bg, fg = events[0], events[1]
        fgp, bgp = noun_phrase(fg), background_phrase(bg)
        forms = [f"{cap(fgp)} over {bgp}", f"{cap(fgp)}, with {bgp} in the background",
                 f"Over {bgp}, {fgp}"]
        return _end(forms[style % len(forms)])
    raise ValueError(f"unknown layout {layout!r}")


def rich_caption(layout: str, events: List[Dict]) -> str:
    """One-line JSON {"keywords", "layout", "description"}."""
    span = lambda e: f"{e['onset']:.2f}-{e['offset']:.2f} s"
    if layout == "single":
        lay = f"single event: {events[0]['class']} ({span(events[0])})"
    elif layout == "sequence":
        lay = "sequence: " + ", then ".join(f"{e['class']} ({span(e)})" for e in events)
    else:
        bg, fg = events
        lay = (f"overlay: {fg['class']} ({span(fg)}) over quiet {bg['class']} "
               f"({span(bg)}, {bg['attributes']['relative_level_db']:+.0f} dB)")
    desc = _end("; ".join(f"{e['class']}: {sentence(e, 0)}" for e in events))
    return json.dumps({"keywords": [e["class"] for e in events], "layout": lay, "description": desc},
                      ensure_ascii=False)
