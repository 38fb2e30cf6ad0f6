"""Deterministic plan of the corpus: held-out material, splits and one spec per clip.

Everything random is drawn here, in the parent process, from RNGs seeded by strings derived
from ``--seed``; workers only render specs, so the corpus does not depend on ``--nj``.

Held-out policy (written to ``heldout.json``):
* voice x speed, instrument x direction x tempo, drum pattern x tempo, waveform x frequency
  combinations, and some asterisk prompts, are never used in train/valid; test singles use them;
* ordered sequence pairs (A, B) and overlay pairs (A over B) are chosen among classes that
  train singles already contain; train/valid never contain them; test compositions do.
So test holds unseen combinations while every event class of test also appears in train.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from . import vocab as V
from .inventory import Effect, Prompt

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
SPEECH_CLASS = "speech"
DRUMS_CLASS = "drum beat"
COMPONENT_CATEGORIES = ["speech_synth", "speech_real", "instrument", "drums", "tone", "noise", "effect"]
OVERLAY_FOREGROUND = ["speech_synth", "speech_real", "instrument", "effect"]


class PlanError(RuntimeError):
    pass


def split_counts(n: int) -> Dict[str, int]:
    if n < 3:
        raise PlanError(f"--num_clips must be at least 3 (one clip per split), got {n}")
    n_test = max(1, round(0.1 * n))
    n_valid = max(1, round(0.1 * n))
    return {"train": n - n_test - n_valid, "valid": n_valid, "test": n_test}


def category_counts(n: int, mix: Dict[str, float]) -> Dict[str, int]:
    """Largest-remainder apportionment of n clips over the mix (deterministic)."""
    total = sum(mix.values())
    raw = {c: n * w / total for c, w in mix.items()}
    out = {c: int(math.floor(v)) for c, v in raw.items()}
    rest = n - sum(out.values())
    for c in sorted(raw, key=lambda c: (-(raw[c] - out[c]), c))[:rest]:
        out[c] += 1
    return out


def mix_recipes(split: str, n: int) -> List[Dict]:
    """``n`` clip recipes of ``split`` in the training category mix (apportioned, in ``V.TRAIN_MIX`` order)."""
    counts = category_counts(n, V.TRAIN_MIX)
    return [{"split": split, "category": c, "mode": "train"} for c in V.TRAIN_MIX for _ in range(counts[c])]


def espeak_voice_id(lang: str, variant: str) -> str:
    return f"espeak-ng {lang}+{variant}"


def flite_voice_id(voice: str) -> str:
    return f"flite {voice}"


ALL_VOICES = [espeak_voice_id(l, v) for l in V.ESPEAK_ACCENTS for v in V.ESPEAK_VARIANTS] + \
    [flite_voice_id(v) for v in V.FLITE_VOICES]


def event_combo(ev: Dict) -> Optional[Tuple[str, tuple]]:
    """The held-out-able combination of an event: (kind of combo, values), or None."""
    k = ev["kind"]
    if k in ("espeak", "flite"):
        return "voice_speed", (ev["voice"], ev["speed"])
    if k == "melody":
        return "instrument_direction_tempo", (ev["instrument"], ev["direction"], ev["tempo"])
    if k == "drums":
        return "drum_pattern_tempo", (ev["pattern"], ev["tempo"])
    if k == "tone":
        return "waveform_frequency", (ev["waveform"], ev["freq"])
    if k == "asterisk":
        return "asterisk_prompts", (ev["path"],)
    if k == "noise":
        return "noise_colour_envelope", (ev["colour"], ev["envelope"])
    if k == "effect":
        return "effect_recordings", (ev["path"],)
    return None


@dataclass
class Heldout:
    combos: Dict[str, Set[tuple]] = field(default_factory=dict)
    sequence_pairs: List[Tuple[str, str]] = field(default_factory=list)
    overlay_pairs: List[Tuple[str, str]] = field(default_factory=list)

    def is_heldout(self, ev: Dict) -> bool:
        c = event_combo(ev)
        return c is not None and c[1] in self.combos.get(c[0], set())

    def to_json(self) -> Dict:
        names = {
            "voice_speed": ("voice", "speed"),
            "instrument_direction_tempo": ("instrument", "direction", "tempo"),
            "drum_pattern_tempo": ("pattern", "tempo"),
            "waveform_frequency": ("waveform", "frequency"),
            "asterisk_prompts": ("path",),
            "noise_colour_envelope": ("colour", "envelope"),
            "effect_recordings": ("path",),
        }
        out = {k: [dict(zip(names[k], v)) for v in sorted(self.combos.get(k, set()), key=str)] for k in names}
        out["sequence_pairs"] = [list(p) for p in self.sequence_pairs]
        out["overlay_pairs"] = [list(p) for p in self.overlay_pairs]
        out["policy"] = (
            "Parameter combinations listed here occur only in test (never in train or valid). "
            "sequence_pairs are ordered (A, then B) pairs of consecutive events; overlay_pairs are "
            "(foreground, quiet background); neither occurs in train or valid. Every event class "
            "used in test occurs in train.")
        return out


class Planner:
    def __init__(self, seed: int, prompts: Sequence[Prompt], effects: Sequence[Effect]):
        if not prompts:
            raise PlanError("no asterisk prompts found: install asterisk-core-sounds-en (tools/install_system.sh)")
        if not effects:
            raise PlanError("no labelled effect recordings found (tools/install_system.sh)")
        self.seed = seed
        self.prompts = list(prompts)
        self.effects: Dict[str, List[Effect]] = {}
        for e in effects:
            self.effects.setdefault(e.label, []).append(e)
        self.effect_labels = sorted(self.effects)
        self.heldout = self._choose_heldout_combos()

    # ------------------------------------------------------------------ held-out combos
    def _choose_heldout_combos(self) -> Heldout:
        rng = random.Random(f"{self.seed}:heldout")
        h = Heldout()
        voices = rng.sample(ALL_VOICES, 8)
        h.combos["voice_speed"] = {(v, rng.choice(V.SPEEDS)) for v in voices}
        insts = rng.sample(sorted(V.INSTRUMENTS), 9)
        h.combos["instrument_direction_tempo"] = {
            (i, rng.choice(V.DIRECTIONS), rng.choice(V.TEMPOS)) for i in insts}
        pats = sorted(V.DRUM_PATTERNS)
        tempos = rng.sample(V.TEMPOS, 2)
        h.combos["drum_pattern_tempo"] = {(p, t) for p, t in zip(rng.sample(pats, 2), tempos)}
        waves = sorted(V.WAVEFORMS)
        freqs = rng.sample(V.TONE_FREQS, len(waves))
        h.combos["waveform_frequency"] = set(zip(waves, freqs))
        n_p = max(1, len(self.prompts) // 10)
        h.combos["asterisk_prompts"] = {(p.path,) for p in rng.sample(self.prompts, n_p)}
        # noise: two colour x envelope combinations (never "steady": backgrounds need it)
        cols = rng.sample(sorted(V.NOISE_COLOURS), 2)
        h.combos["noise_colour_envelope"] = {(c, rng.choice(["fading in", "fading out"])) for c in cols}
        # effects: one recording of every label that has several (the label stays in train)
        h.combos["effect_recordings"] = {
            (rng.choice(files).path,) for lab, files in sorted(self.effects.items()) if len(files) >= 2}
        return h

    # ------------------------------------------------------------------ event samplers
    # mode "train": never a held-out combination; mode "test": only held-out combinations
    def _ok(self, ev: Dict, mode: str) -> bool:
        return self.heldout.is_heldout(ev) == (mode == "test")

    def _sample_until(self, make, rng, mode, what: str, tries: int = 500) -> Dict:
        for _ in range(tries):
            ev = make()
            if self._ok(ev, mode):
                return ev
        raise PlanError(f"could not sample a {mode} {what} in {tries} tries")

    @staticmethod
    def sentence(rng: random.Random, short: bool) -> str:
        w = V.WORDS
        c = rng.choice
        if short:
            forms = [lambda: f"the {c(w['adj'])} {c(w['noun'])}",
                     lambda: f"{c(w['noun'])} {c(w['verb'])} {c(w['adv'])}",
                     lambda: f"hello {c(w['adj'])} {c(w['noun'])}",
                     lambda: f"{c(w['num'])} {c(w['num'])} {c(w['num'])}"]
        else:
            forms = [lambda: f"the {c(w['adj'])} {c(w['noun'])} {c(w['verb'])} {c(w['adv'])}",
                     lambda: f"the {c(w['noun'])} {c(w['verb'])} near {c(w['place'])}",
                     lambda: f"please meet the {c(w['adj'])} {c(w['noun'])} at {c(w['place'])}",
                     lambda: "call " + " ".join(c(w["num"]) for _ in range(rng.randint(3, 5))),
                     lambda: f"a {c(w['adj'])} {c(w['noun'])} and a {c(w['adj'])} {c(w['noun'])} {c(w['verb'])}"]
        words = c(forms)().split(" ")
        for i in range(len(words) - 1):  # "a old dog" -> "an old dog"
            if words[i] == "a" and words[i + 1][:1] in "aeiou":
                words[i] = "an"
        return " ".join(words)

    def ev_speech_synth(self, rng, mode, short=False, voice: Optional[str] = None) -> Dict:
        def make():
            v = voice or rng.choice(ALL_VOICES)
            speed = rng.choice(V.SPEEDS)
            text = self.sentence(rng, short)
            if v.startswith("espeak-ng "):
                lang, variant = v.split(" ", 1)[1].split("+")
                return {"kind": "espeak", "category": "speech_synth", "class": SPEECH_CLASS, "voice": v,
                        "engine": "espeak-ng", "lang": lang, "variant": variant,
                        "gender": V.ESPEAK_VARIANTS[variant], "accent": V.ESPEAK_ACCENTS[lang],
                        "speed": speed, "pitch": rng.choice(V.PITCHES), "text": text}
            fv = v.split(" ", 1)[1]
            gender, accent = V.FLITE_VOICES[fv]
            return {"kind": "flite", "category": "speech_synth", "class": SPEECH_CLASS, "voice": v,
                    "engine": "flite", "gender": gender, "accent": accent, "speed": speed, "text": text}
        return self._sample_until(make, rng, mode, "synthetic speech event")

    def ev_speech_real(self, rng, mode, short=False) -> Dict:
        pool = [p for p in self.prompts if (p.duration <= 3.0 if short else p.duration >= 1.0)]
        pool = [p for p in pool if self.heldout.is_heldout({"kind": "asterisk", "path": p.path}) == (mode == "test")]
        if not pool:
            raise PlanError(f"no {mode} asterisk prompt fits (short={short})")
        p = rng.choice(pool)
        return {"kind": "asterisk", "category": "speech_real", "class": SPEECH_CLASS, "path": p.path,
                "text": p.text, "gender": "female", "speaker": "asterisk prompt speaker",
                "recording": "telephone quality (8 kHz)"}

    def ev_instrument(self, rng, mode, short=False, instrument: Optional[str] = None) -> Dict:
        def make():
            inst = instrument or rng.choice(sorted(V.INSTRUMENTS))
            tempo = rng.choice(V.TEMPOS)
            n = rng.randint(4, 5) if short else rng.randint(6, 8)
            return {"kind": "melody", "category": "instrument", "class": inst, "instrument": inst,
                    "direction": rng.choice(V.DIRECTIONS), "tempo": tempo, "key": rng.choice(sorted(V.KEYS)),
                    "steps": [rng.choice([1, 1, 2]) for _ in range(n - 1)], "notes": n}
        return self._sample_until(make, rng, mode, "instrument event")

    def ev_drums(self, rng, mode, short=False) -> Dict:
        def make():
            tempo = rng.choice(V.TEMPOS)
            bars = 1 if short else (3 if tempo == "fast" else 2)
            return {"kind": "drums", "category": "drums", "class": DRUMS_CLASS,
                    "pattern": rng.choice(sorted(V.DRUM_PATTERNS)), "tempo": tempo, "bars": bars}
        return self._sample_until(make, rng, mode, "drum event")

    def ev_tone(self, rng, mode, short=False, waveform: Optional[str] = None, sweep: Optional[bool] = None) -> Dict:
        def make():
            wf = waveform or rng.choice(sorted(V.WAVEFORMS))
            dur = round(rng.uniform(1.0, 2.0) if short else rng.uniform(2.0, 5.0), 2)
            is_sweep = (rng.random() < 0.4) if sweep is None else sweep
            if is_sweep and mode != "test":
                rng_name = rng.choice(sorted(V.SWEEP_RANGES))
                lo, hi = V.SWEEP_RANGES[rng_name]
                direction = rng.choice(V.DIRECTIONS)
                f0, f1 = (lo, hi) if direction == "rising" else (hi, lo)
                return {"kind": "sweep", "category": "tone", "class": f"{wf} sweep", "waveform": wf,
                        "direction": direction, "f0": f0, "f1": f1, "range": rng_name, "dur": dur}
            return {"kind": "tone", "category": "tone", "class": f"{wf} tone", "waveform": wf,
                    "freq": rng.choice(V.TONE_FREQS), "dur": dur}
        return self._sample_until(make, rng, mode, "tone event")

    def ev_noise(self, rng, mode, short=False, colour: Optional[str] = None) -> Dict:
        def make():
            col = colour or rng.choice(sorted(V.NOISE_COLOURS))
            return {"kind": "noise", "category": "noise", "class": f"{col} noise", "colour": col,
                    "envelope": rng.choice(V.NOISE_ENVELOPES),
                    "dur": round(rng.uniform(1.0, 2.0) if short else rng.uniform(2.0, 5.0), 2),
                    "offset": round(rng.random(), 4)}
        return self._sample_until(make, rng, mode, "noise event")

    def ev_effect(self, rng, mode, short=False, label: Optional[str] = None) -> Dict:
        want_heldout = mode == "test"
        files = {lab: [e for e in fs if self.heldout.is_heldout({"kind": "effect", "path": e.path}) == want_heldout]
                 for lab, fs in self.effects.items()}
        labels = [label] if label else [lab for lab in self.effect_labels if files[lab]]
        if not labels or not files[labels[0]]:
            raise PlanError(f"no {mode} recording for effect label {label!r}")
        lab = rng.choice(labels)
        e = rng.choice(files[lab])
        return {"kind": "effect", "category": "effect", "class": lab, "label": lab, "path": e.path,
                "collection": e.source, "max_dur": 3.0 if short else 6.0}

    def event(self, category: str, rng, mode: str, short: bool = False) -> Dict:
        return getattr(self, f"ev_{category}")(rng, mode, short)

    def event_of_class(self, cls: str, rng, short: bool) -> Dict:
        """A non-held-out event whose class is cls (for compositions)."""
        if cls == SPEECH_CLASS:
            return (self.ev_speech_synth if rng.random() < 0.7 else self.ev_speech_real)(rng, "train", short)
        if cls == DRUMS_CLASS:
            return self.ev_drums(rng, "train", short)
        if cls in V.INSTRUMENTS:
            return self.ev_instrument(rng, "train", short, instrument=cls)
        for wf in V.WAVEFORMS:
            if cls == f"{wf} tone":
                return self.ev_tone(rng, "train", short, waveform=wf, sweep=False)
            if cls == f"{wf} sweep":
                return self.ev_tone(rng, "train", short, waveform=wf, sweep=True)
        for col in V.NOISE_COLOURS:
            if cls == f"{col} noise":
                return self.ev_noise(rng, "train", short, colour=col)
        if cls in self.effects:
            return self.ev_effect(rng, "train", short, label=cls)
        raise PlanError(f"unknown event class {cls!r}")

    # ------------------------------------------------------------------ clips
    def single(self, category: str, rng, mode: str) -> Dict:
        ev = self.event(category, rng, mode)
        return {"category": category, "layout": "single", "events": [ev],
                "lead": round(rng.uniform(0.2, 0.8), 3), "tail": round(rng.uniform(0.2, 0.8), 3)}

    def sequence(self, rng, classes: Optional[Sequence[str]] = None, avoid: Set[Tuple[str, str]] = frozenset()) -> Dict:
        for _ in range(500):
            if classes is None:
                n = 3 if rng.random() < 0.25 else 2
                evs = [self.event(rng.choice(COMPONENT_CATEGORIES), rng, "train", short=True) for _ in range(n)]
            else:
                evs = [self.event_of_class(c, rng, short=True) for c in classes]
            cls = [e["class"] for e in evs]
            pairs = list(zip(cls, cls[1:]))
            if any(a == b for a, b in pairs) or any(p in avoid for p in pairs):
                if classes is not None:
                    raise PlanError(f"sequence classes {classes} break the pair rules")
                continue
            return {"category": "sequence", "layout": "sequence", "events": evs,
                    "lead": round(rng.uniform(0.2, 0.6), 3), "tail": round(rng.uniform(0.2, 0.6), 3),
                    "gaps": [round(rng.uniform(0.3, 0.8), 3) for _ in evs[1:]]}
        raise PlanError("could not sample a sequence avoiding the held-out pairs")

    def overlay(self, rng, pair: Optional[Tuple[str, str]] = None, avoid: Set[Tuple[str, str]] = frozenset()) -> Dict:
        for _ in range(500):
            if pair is None:
                fg = self.event(rng.choice(OVERLAY_FOREGROUND), rng, "train", short=False)
                if rng.random() < 0.6:
                    bg = self.ev_noise(rng, "train")
                else:
                    bg = self.ev_tone(rng, "train", sweep=False)
            else:
                fg = self.event_of_class(pair[0], rng, short=False)
                bg = self.event_of_class(pair[1], rng, short=False)
            if fg.get("max_dur"):
                fg["max_dur"] = 5.0
            if bg["kind"] == "noise":
                bg["envelope"] = "steady"  # a background spans the clip at a constant level
            if (fg["class"], bg["class"]) in avoid:
                continue
            return {"category": "overlay", "layout": "overlay", "events": [fg], "background": bg,
                    "lead": round(rng.uniform(0.4, 1.0), 3), "tail": round(rng.uniform(0.4, 1.0), 3)}
        raise PlanError("could not sample an overlay avoiding the held-out pairs")

    # ------------------------------------------------------------------ the whole plan
    def choose_heldout_pairs(self, train_classes: Set[str], n_seq: int, n_ov: int) -> None:
        """Held-out ordered pairs; classes are drawn category first, so effects (many labels)
        do not crowd out speech, music, tones and noise."""
        rng = random.Random(f"{self.seed}:heldout-pairs")
        classes = sorted(train_classes)
        if len(classes) < 2:
            raise PlanError("train singles cover fewer than 2 classes; use more --num_clips")

        def pick(pool: List[str]) -> str:
            groups: Dict[str, List[str]] = {}
            for c in pool:
                groups.setdefault(self._class_category(c), []).append(c)
            return rng.choice(groups[rng.choice(sorted(groups))])

        seq: List[Tuple[str, str]] = []
        want = min(max(3, math.ceil(n_seq / 2)), len(classes) * (len(classes) - 1))
        for _ in range(100 * want):
            if len(seq) >= want:
                break
            a, b = pick(classes), pick(classes)
            if a != b and (a, b) not in seq:
                seq.append((a, b))
        self.heldout.sequence_pairs = seq
        fgs = [c for c in classes if self._class_category(c) in OVERLAY_FOREGROUND]
        bg_classes = {f"{c} noise" for c in V.NOISE_COLOURS} | {f"{w} tone" for w in V.WAVEFORMS}
        bgs = [c for c in classes if c in bg_classes]
        ov: List[Tuple[str, str]] = []
        want = min(max(2, math.ceil(n_ov / 2)), len(fgs) * len(bgs))
        for _ in range(100 * want):
            if len(ov) >= want:
                break
            p = (pick(fgs), rng.choice(bgs))
            if p not in ov:
                ov.append(p)
        self.heldout.overlay_pairs = ov

    def _class_category(self, cls: str) -> str:
        if cls == SPEECH_CLASS:
            return "speech_synth"
        if cls == DRUMS_CLASS:
            return "drums"
        if cls in V.INSTRUMENTS:
            return "instrument"
        if cls in {f"{w} tone" for w in V.WAVEFORMS} | {f"{w} sweep" for w in V.WAVEFORMS}:
            return "tone"
        if cls in {f"{c} noise" for c in V.NOISE_COLOURS}:
            return "noise"
        return "effect"

    def make_clip(self, recipe: Dict, rng: random.Random) -> Dict:
        """recipe: {split, category, mode, pair?} -> clip spec (no utt yet)."""
        cat, mode = recipe["category"], recipe["mode"]
        seq_avoid = set(self.heldout.sequence_pairs) if mode == "train" else set()
        ov_avoid = set(self.heldout.overlay_pairs) if mode == "train" else set()
        if cat == "sequence":
            spec = self.sequence(rng, recipe.get("classes"), seq_avoid)
        elif cat == "overlay":
            spec = self.overlay(rng, tuple(recipe["pair"]) if recipe.get("pair") else None, ov_avoid)
        else:
            spec = self.single(cat, rng, mode)
        spec["split"] = recipe["split"]
        spec["recipe"] = recipe
        spec["style"] = rng.randrange(1000)
        return spec

    def plan(self, num_clips: int, train_clips: Optional[int] = None) -> List[Dict]:
        """Specs of every clip. ``train_clips`` (default: ``num_clips`` less valid and test) adds training clips
        drawn after the default ones from their own random stream, under the same held-out policy, so valid,
        test and the default training clips stay what ``num_clips`` alone gives."""
        counts = split_counts(num_clips)
        n_extra = 0 if train_clips is None else train_clips - counts["train"]
        if n_extra < 0:
            raise PlanError(f"--train_clips must be at least the {counts['train']} training clips of --num_clips "
                            f"{num_clips} (it adds clips), got {train_clips}")
        specs: List[Dict] = []
        # 1. train singles
        rng = random.Random(f"{self.seed}:plan:train")
        recipes = mix_recipes("train", counts["train"])
        singles = [r for r in recipes if r["category"] in V.SINGLE_CATEGORIES]
        train_specs = [self.make_clip(r, rng) for r in singles]
        train_classes = {e["class"] for s in train_specs for e in s["events"]}
        self.train_classes = train_classes
        # 2. held-out pairs among classes that train singles contain
        test_mix = category_counts(counts["test"], V.TEST_MIX)
        self.choose_heldout_pairs(train_classes, test_mix["sequence"], test_mix["overlay"])
        # 3. train compositions, valid
        train_specs += [self.make_clip(r, rng) for r in recipes if r["category"] in V.COMPOSITE_CATEGORIES]
        rng_v = random.Random(f"{self.seed}:plan:valid")
        valid_specs = [self.make_clip(r, rng_v) for r in mix_recipes("valid", counts["valid"])]
        # 3b. extra training clips: the same category mix, after the held-out choice (so they obey it); singles first
        rng_x = random.Random(f"{self.seed}:plan:train-extra")
        extra_specs = [self.make_clip(r, rng_x) for r in sorted(
            mix_recipes("train", n_extra), key=lambda r: r["category"] in V.COMPOSITE_CATEGORIES)]
        # 4. test: held-out combinations (classes seen in train) and held-out pairs
        rng_t = random.Random(f"{self.seed}:plan:test")
        test_specs: List[Dict] = []
        seq_i = ov_i = 0
        for c in V.TEST_MIX:
            for _ in range(test_mix[c]):
                spec = None
                if c in V.SINGLE_CATEGORIES:
                    spec = self._test_single(c, rng_t, train_classes)
                if spec is None and c == "overlay" and self.heldout.overlay_pairs:
                    pair = self.heldout.overlay_pairs[ov_i % len(self.heldout.overlay_pairs)]
                    ov_i += 1
                    spec = self.make_clip({"split": "test", "category": "overlay", "mode": "test",
                                           "pair": list(pair)}, rng_t)
                if spec is None:  # sequences, and the fallback for anything else
                    a, b = self.heldout.sequence_pairs[seq_i % len(self.heldout.sequence_pairs)]
                    classes = [a, b]
                    if seq_i % 4 == 3:  # every 4th: a held-out pair, then a third event
                        classes.append(rng_t.choice(sorted(train_classes - {b})))
                    seq_i += 1
                    spec = self.make_clip({"split": "test", "category": "sequence", "mode": "test",
                                           "classes": classes}, rng_t)
                test_specs.append(spec)
        # 5. order and name (the extra training clips after the default ones: those keep their names)
        out = []
        named: Dict[str, int] = defaultdict(int)
        for stream, ss in (("train", train_specs), ("train-extra", extra_specs), ("valid", valid_specs),
                           ("test", test_specs)):
            random.Random(f"{self.seed}:order:{stream}").shuffle(ss)
            for s in ss:
                s["utt"] = f"mini-{s['split']}-{named[s['split']]:05d}"
                named[s["split"]] += 1
                out.append(s)
        return out

    def _test_single(self, category: str, rng, train_classes: Set[str]) -> Optional[Dict]:
        """A single clip of a held-out combination whose class train has; None if impossible."""
        for _ in range(200):
            try:
                spec = self.make_clip({"split": "test", "category": category, "mode": "test"}, rng)
            except PlanError:
                return None
            if spec["events"][0]["class"] in train_classes:
                return spec
        return None

    def replacement(self, spec: Dict, attempt: int) -> Dict:
        """A new spec for the same recipe, after a render/QC failure (deterministic)."""
        rng = random.Random(f"{self.seed}:{spec['utt']}:retry{attempt}")
        recipe = spec["recipe"]
        if recipe["mode"] == "test" and recipe["category"] in V.SINGLE_CATEGORIES:
            new = self._test_single(recipe["category"], rng, self.train_classes)
            if new is None:
                raise PlanError(f"{spec['utt']}: no replacement for a held-out {recipe['category']} clip")
        else:
            new = self.make_clip(recipe, rng)
        new["utt"] = spec["utt"]
        return new
