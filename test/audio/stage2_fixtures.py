"""Helpers for the stage-2 tests: real audio files of every kind the formatter must handle."""
from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf


def tone(sr: int, dur: float, freq: float = 440.0, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    """A sine ``[L, C]`` (soundfile layout); channel c is at ``freq * (1 + c/2)``."""
    t = np.arange(int(round(sr * dur))) / sr
    cols = [amp * np.sin(2 * np.pi * freq * (1 + c / 2) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_mixed_shard(root: Path) -> Dict[str, str]:
    """Write one clip per case into ``root/audio``; returns key -> path (a wav.scp).

    Keys are named after the expected outcome. Durations are short so tests stay fast;
    the too-long case relies on ``--max_dur 3``.
    """
    d = root / "audio"
    d.mkdir(parents=True)
    scp = {}

    def w(key, name, data, sr, **kw):
        path = d / name
        sf.write(str(path), data, sr, **kw)
        scp[key] = str(path)

    w("good_16k_mono", "g16.wav", tone(16000, 1.0), 16000)
    w("good_48k_stereo", "g48.wav", tone(48000, 2.0, channels=2), 48000)
    w("good_8k_flac", "g8.flac", tone(8000, 1.5), 8000)
    w("good_22k_ogg", "g22.ogg", tone(22050, 1.0), 22050)
    nan = tone(16000, 1.0)
    nan[100, 0] = np.nan
    w("bad_nan", "nan.wav", nan, 16000, subtype="FLOAT")
    w("bad_silent", "silent.wav", np.zeros((16000, 1), np.float32), 16000)
    w("bad_quiet", "quiet.wav", tone(16000, 1.0, amp=1e-4), 16000, subtype="FLOAT")  # -80 dBFS
    w("bad_short", "short.wav", tone(16000, 0.12), 16000)
    w("bad_long", "long.wav", tone(16000, 4.0), 16000)
    w("bad_zero", "zero.wav", np.zeros((0, 1), np.float32), 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    scp["bad_corrupt"] = str(d / "corrupt.wav")
    scp["bad_missing"] = str(d / "does_not_exist.wav")
    return dict(sorted(scp.items()))


EXPECTED_REJECTED = {
    "bad_corrupt": "unreadable: ",
    "bad_long": "too long (4.00 s > 3 s)",
    "bad_missing": "missing file: ",
    "bad_nan": "contains NaN/Inf (1 of 16000 samples)",
    "bad_quiet": "silent (peak -80.0 dBFS < -60 dBFS)",
    "bad_short": "too short (0.12 s < 0.5 s)",
    "bad_silent": "silent (peak -inf dBFS < -60 dBFS)",
    "bad_zero": "zero length",
}
EXPECTED_KEPT_SAMPLES = {
    "good_16k_mono": 16000,
    "good_48k_stereo": 32000,
    "good_8k_flac": 24000,
    "good_22k_ogg": 16000,
}


def write_data_dir(root: Path) -> Path:
    """A stage-1 style data dir over the mixed shard's clips, with qa/ and text_only/."""
    import json

    from ualm_tk.data.kaldi_files import write_kaldi_file

    scp = write_mixed_shard(root)
    d = root / "data" / "train"
    keys = list(scp)
    write_kaldi_file(d / "wav.scp", scp)
    write_kaldi_file(d / "text", {k: f"a clip called {k.replace('_', ' ')}" for k in keys})
    write_kaldi_file(d / "utt2spk", {k: k.split("_")[0] for k in keys})  # speakers 'bad', 'good'
    write_kaldi_file(d / "spk2utt", {s: " ".join(k for k in keys if k.startswith(s + "_")) for s in ("bad", "good")})
    write_kaldi_file(d / "utt2category", {k: "tone" for k in keys})
    write_kaldi_file(d / "metadata", {k: json.dumps({"name": k}) for k in keys})
    write_kaldi_file(
        d / "rich_caption",
        {k: json.dumps({"keywords": ["tone"], "layout": "single", "description": "a tone"}) for k in keys},
    )
    qa = {f"{k}-q{j:02d}": k for k in keys for j in (1, 2)}
    write_kaldi_file(d / "qa" / "question", {q: "is it a tone?" for q in qa})
    write_kaldi_file(d / "qa" / "answer", {q: "yes" for q in qa})
    write_kaldi_file(d / "qa" / "qtype", {q: "yesno" for q in qa})
    write_kaldi_file(d / "qa" / "qa2utt", qa)
    write_kaldi_file(d / "text_only" / "question", {"t1": "what is 2+2?", "t2": "name a colour"})
    write_kaldi_file(d / "text_only" / "answer", {"t1": "4", "t2": "red"})
    write_kaldi_file(d / "text_only" / "qtype", {"t1": "math", "t2": "open"})
    return d
