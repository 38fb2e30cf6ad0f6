"""Question/answer pairs derived from a clip's metadata, and the qtype catalogue.

Answers are short and exact: a category word, a number, yes/no, or the exact words said.
A category-specific question is asked only when the clip holds exactly one event of that
kind, so the answer is never ambiguous. ``QTYPES`` describes every qtype: whether it is
categorical and, if so, its closed answer set (filled in by :func:`qtypes_catalogue`).
"""

from __future__ import annotations

import random
from typing import Dict, List, Sequence, Tuple

from . import vocab as V

# qtype -> (categorical?, fixed answer set or None (filled from the corpus), question forms)
QTYPES: Dict[str, Tuple[bool, object, List[str]]] = {
    "is_there_speech": (True, ["no", "yes"], ["Is there speech in this clip?", "Does anyone speak in this recording?"]),
    "event_count": (True, ["1", "2", "3"], ["How many sound events does the clip contain?",
                                            "How many separate sounds can be heard?"]),
    "what_is_said": (False, None, ["What is said?", "What words are spoken?"]),
    "speaker_gender": (True, ["female", "male"], ["Is the speaker male or female?"]),
    "speaker_accent": (True, sorted(set(V.ESPEAK_ACCENTS.values()) | {a for _, a in V.FLITE_VOICES.values()}),
                       ["Which accent does the synthetic voice have?"]),
    "speech_rate": (True, V.SPEEDS, ["Is the speech slow, normal or fast?"]),
    "voice_pitch": (True, V.PITCHES, ["Is the voice pitch low, medium or high?"]),
    "speech_source": (True, ["recorded", "synthetic"], ["Is the speech synthetic or recorded?"]),
    "which_instrument": (True, sorted(V.INSTRUMENTS), ["Which instrument plays the melody?",
                                                      "What instrument is heard?"]),
    "melody_direction": (True, V.DIRECTIONS, ["Is the melody rising or falling?"]),
    "melody_tempo": (True, V.TEMPOS, ["Is the tempo of the melody slow, medium or fast?"]),
    "note_count": (True, ["4", "5", "6", "7", "8"], ["How many notes does the melody have?"]),
    "drum_pattern": (True, sorted(V.DRUM_PATTERNS), ["Which drum pattern is played?"]),
    "drum_tempo": (True, V.TEMPOS, ["Is the tempo of the drum beat slow, medium or fast?"]),
    "waveform": (True, sorted(V.WAVEFORMS), ["What waveform does the tone have?"]),
    "tone_frequency": (True, [str(f) for f in V.TONE_FREQS],
                       ["What is the frequency of the steady tone in hertz?"]),
    "sweep_direction": (True, V.DIRECTIONS, ["Is the frequency sweep rising or falling?"]),
    "noise_colour": (True, sorted(V.NOISE_COLOURS), ["What colour of noise is it: white, pink or brown?"]),
    "noise_envelope": (True, V.NOISE_ENVELOPES, ["Is the noise steady, fading in or fading out?"]),
    "sound_source": (True, None, ["What is the source of the sound effect?", "What makes this sound?"]),
    "first_event": (True, None, ["Which sound comes first, the {x} or the {y}?"]),
    "last_event": (True, None, ["Which sound comes last, the {x} or the {y}?"]),
    "background_sound": (True, None, ["What is the quiet sound in the background?"]),
}


def _only(events: Sequence[Dict], pred) -> Dict:
    hits = [e for e in events if pred(e)]
    return hits[0] if len(hits) == 1 else None


def clip_qa(layout: str, events: List[Dict], rng: random.Random) -> List[Tuple[str, str, str]]:
    """events in time order -> [(qtype, question, answer)]."""
    out: List[Tuple[str, str, str]] = []

    def ask(qtype: str, answer, **fmt) -> None:
        q = rng.choice(QTYPES[qtype][2]).format(**fmt)
        out.append((qtype, q, str(answer)))

    speech = [e for e in events if e["category"] in V.SPEECH_CATEGORIES]
    ask("is_there_speech", "yes" if speech else "no")
    ask("event_count", len(events))
    if len(speech) == 1:
        at = speech[0]["attributes"]
        ask("what_is_said", at["text"])
        ask("speaker_gender", at["gender"])
        ask("speech_source", "synthetic" if speech[0]["category"] == "speech_synth" else "recorded")
        if speech[0]["category"] == "speech_synth":
            ask("speaker_accent", at["accent"])
            ask("speech_rate", at["speed"])
            if "pitch" in at:
                ask("voice_pitch", at["pitch"])
    if (e := _only(events, lambda e: e["category"] == "instrument")):
        at = e["attributes"]
        ask("which_instrument", at["instrument"])
        ask("melody_direction", at["direction"])
        ask("melody_tempo", at["tempo"])
        ask("note_count", at["notes"])
    if (e := _only(events, lambda e: e["category"] == "drums")):
        ask("drum_pattern", e["attributes"]["pattern"])
        ask("drum_tempo", e["attributes"]["tempo"])
    tones = [e for e in events if e["category"] == "tone"]
    if len(tones) == 1:
        at = tones[0]["attributes"]
        ask("waveform", at["waveform"])
        if "f0" in at:
            ask("sweep_direction", at["direction"])
        else:
            ask("tone_frequency", at["freq"])
    if (e := _only(events, lambda e: e["category"] == "noise")):
        ask("noise_colour", e["attributes"]["colour"])
        ask("noise_envelope", e["attributes"]["envelope"])
    if (e := _only(events, lambda e: e["category"] == "effect")):
        ask("sound_source", e["attributes"]["label"])
    if layout == "sequence":
        first, last = events[0]["class"], events[-1]["class"]
        if first != last:
            x, y = rng.sample([first, last], 2)
            ask("first_event", first, x=x, y=y)
            x, y = rng.sample([first, last], 2)
            ask("last_event", last, x=x, y=y)
    if layout == "overlay":
        ask("background_sound", events[0]["class"])
    return out


def qtypes_catalogue(event_classes: Sequence[str], effect_labels: Sequence[str]) -> Dict[str, Dict]:
    """qtypes.json content: for each qtype, categorical flag, answer set, question forms."""
    out = {}
    for name, (categorical, answers, forms) in QTYPES.items():
        if name == "sound_source":
            answers = sorted(effect_labels)
        elif name in ("first_event", "last_event", "background_sound"):
            answers = sorted(event_classes)
        out[name] = {"categorical": categorical, "answers": answers if categorical else None,
                     "questions": forms,
                     "answer_kind": "category" if categorical else "exact words"}
    out["event_count"]["answer_kind"] = "number"
    out["note_count"]["answer_kind"] = "number"
    out["tone_frequency"]["answer_kind"] = "number (Hz)"
    out["is_there_speech"]["answer_kind"] = "yes/no"
    return out
