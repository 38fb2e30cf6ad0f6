"""Generation vocabularies of the mini corpus: every caption word comes from these tables.

Each table maps a generation parameter to the words used to describe it, so a caption,
a QA answer and the rendered audio are all derived from the same value.
"""

from __future__ import annotations

SAMPLE_RATE = 48000
MIN_CLIP_S = 2.0
MAX_CLIP_S = 10.0

# --- synthetic speech -------------------------------------------------------------------------
# espeak-ng language voices -> accent word (espeak-ng's own names for them)
ESPEAK_ACCENTS = {
    "en-us": "American",
    "en-gb": "British",
    "en-gb-scotland": "Scottish",
    "en-029": "Caribbean",
}
# espeak-ng voice variants -> gender declared in the variant file (voices/!v/<name>)
ESPEAK_VARIANTS = {"m1": "male", "m3": "male", "m5": "male", "f1": "female", "f2": "female", "f4": "female"}
ESPEAK_SPEED_WPM = {"slow": 125, "normal": 165, "fast": 215}
ESPEAK_PITCH = {"low": 25, "medium": 50, "high": 75}
# flite voices -> (gender, accent)
FLITE_VOICES = {
    "kal": ("male", "American"),
    "rms": ("male", "American"),
    "awb": ("male", "Scottish"),
    "slt": ("female", "American"),
}
FLITE_STRETCH = {"slow": 1.3, "normal": 1.0, "fast": 0.78}
SPEEDS = ["slow", "normal", "fast"]
PITCHES = ["low", "medium", "high"]

# words for the sentences spoken by the synthetic voices
WORDS = {
    "adj": ["red", "quiet", "little", "happy", "old", "bright", "cold", "green", "lazy", "tall",
            "small", "gentle", "brave", "silver", "hungry", "sleepy"],
    "noun": ["fox", "river", "teacher", "garden", "window", "dog", "train", "piano", "city", "farmer",
             "bird", "kettle", "robot", "boat", "forest", "baker"],
    "verb": ["moved", "waited", "jumped", "sang", "stopped", "turned", "smiled", "rested", "listened",
             "worked", "danced", "looked"],
    # no speed adverbs here: captions state the speaking rate, the words must not contradict it
    "adv": ["today", "again", "outside", "here", "later", "alone", "together", "at night", "at noon",
            "once more"],
    "num": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "place": ["the station", "the market", "the park", "the school", "the bridge", "the harbor"],
}

# --- music -------------------------------------------------------------------------------------
# General-MIDI programs (0-based) rendered with TimGM6mb.sf2
INSTRUMENTS = {
    "piano": 0, "harpsichord": 6, "vibraphone": 11, "marimba": 12, "church organ": 19,
    "acoustic guitar": 24, "violin": 40, "cello": 42, "harp": 46, "trumpet": 56,
    "clarinet": 71, "flute": 73,
}
DIRECTIONS = ["rising", "falling"]
TEMPO_BPM = {"slow": 72, "medium": 108, "fast": 150}
TEMPOS = ["slow", "medium", "fast"]
KEYS = {"C": 60, "D": 62, "E": 64, "F": 65, "G": 67}
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
# drum patterns on a 16-step bar (sixteenth notes); GM percussion keys
KICK, SNARE, HIHAT, CLAP = 36, 38, 42, 39
DRUM_PATTERNS = {
    "backbeat": {KICK: [0, 8], SNARE: [4, 12], HIHAT: [0, 2, 4, 6, 8, 10, 12, 14]},
    "four-on-the-floor": {KICK: [0, 4, 8, 12], CLAP: [4, 12], HIHAT: [2, 6, 10, 14]},
    "half-time": {KICK: [0], SNARE: [8], HIHAT: [0, 2, 4, 6, 8, 10, 12, 14]},
}

# --- sox synthesis -----------------------------------------------------------------------------
WAVEFORMS = {"sine": "sine", "square": "square", "sawtooth": "sawtooth", "triangle": "triangle"}
TONE_FREQS = [220, 330, 440, 660, 880, 1000, 1320]
SWEEP_RANGES = {"low": (200, 800), "high": (800, 3200)}
NOISE_COLOURS = {"white": "whitenoise", "pink": "pinknoise", "brown": "brownnoise"}
NOISE_ENVELOPES = ["steady", "fading in", "fading out"]

# --- categories --------------------------------------------------------------------------------
SINGLE_CATEGORIES = ["speech_synth", "speech_real", "instrument", "drums", "tone", "noise", "effect"]
COMPOSITE_CATEGORIES = ["sequence", "overlay"]
CATEGORIES = SINGLE_CATEGORIES + COMPOSITE_CATEGORIES
SPEECH_CATEGORIES = ("speech_synth", "speech_real")

# share of clips per category in train/valid, and in test (test is mostly held-out material)
TRAIN_MIX = {"speech_synth": 0.18, "speech_real": 0.08, "instrument": 0.14, "drums": 0.06,
             "tone": 0.10, "noise": 0.06, "effect": 0.14, "sequence": 0.16, "overlay": 0.08}
TEST_MIX = {"sequence": 0.26, "overlay": 0.18, "speech_synth": 0.14, "speech_real": 0.10,
            "instrument": 0.14, "drums": 0.04, "tone": 0.06, "noise": 0.04, "effect": 0.04}

# level policy (dBFS)
TARGET_RMS_DB = -20.0
PEAK_LIMIT = 0.89
OVERLAY_BACKGROUND_DB = -14.0  # background RMS relative to the foreground's
