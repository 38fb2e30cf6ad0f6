"""Tests of the mini_ualm corpus (egs2/mini_ualm/ualm1/local/data.sh, stage 1).

One small corpus is generated per session through the real data.sh (real espeak-ng, flite,
fluidsynth, sox, real recordings) and shared by the checks; a 12-clip corpus is generated twice
for the determinism check.
"""

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ualm_tk.data.kaldi_files import read_kaldi_file

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "mini_ualm" / "ualm1"
SPLITS = ("train", "valid", "test")
CLIP_FILES = ("wav.scp", "text", "utt2spk", "utt2category", "metadata", "rich_caption")
QA_FILES = ("question", "answer", "qtype", "qa2utt")
TEXT_FILES = ("question", "answer", "solution", "qtype", "problem_id")
CATEGORIES = {"speech_synth", "speech_real", "instrument", "drums", "tone", "noise", "effect",
              "sequence", "overlay"}
SR = 48000

sys.path.insert(0, str(RECIPE / "local"))


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["PYTHON"] = sys.executable
    return env


def run_data_sh(corpus_dir, data_dir, num_clips, nj, seed=0, check=True, extra=()):
    cmd = ["local/data.sh", "--corpus_dir", str(corpus_dir), "--data_dir", str(data_dir),
           "--num_clips", str(num_clips), "--seed", str(seed), "--nj", str(nj), *extra]
    res = subprocess.run(cmd, cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, f"data.sh failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_corpus")
    run_data_sh(root / "corpus", root / "data", num_clips=50, nj=2)
    return load_corpus(root)


def load_corpus(root):
    data = root / "data"
    sets = {}
    for s in SPLITS:
        d = data / s
        meta = {k: json.loads(v) for k, v in read_kaldi_file(d / "metadata").items()}
        sets[s] = {
            "dir": d,
            "wav": read_kaldi_file(d / "wav.scp"),
            "text": read_kaldi_file(d / "text"),
            "cat": read_kaldi_file(d / "utt2category"),
            "meta": meta,
            "rich": {k: json.loads(v) for k, v in read_kaldi_file(d / "rich_caption").items()},
            "qa": {f: read_kaldi_file(d / "qa" / f) for f in QA_FILES},
            "text_only": {f: read_kaldi_file(d / "text_only" / f) for f in TEXT_FILES},
        }
    return {"root": root, "data": data, "sets": sets,
            "heldout": json.loads((data / "heldout.json").read_text()),
            "qtypes": json.loads((data / "qtypes.json").read_text())}


def _read(path):
    x, sr = sf.read(path, dtype="float64", always_2d=True)  # [L,C]
    return x, sr


def _rms_db(x):
    return 20 * np.log10(max(float(np.sqrt(np.mean(x ** 2))), 1e-10)) if x.size else -200.0


def _all_clips(corpus, splits=SPLITS):
    for s in splits:
        st = corpus["sets"][s]
        for utt, meta in st["meta"].items():
            yield s, utt, meta, st


# --------------------------------------------------------------------------- Kaldi contract
def test_data_dirs_obey_kaldi_contract(corpus):
    total = 0
    for s in SPLITS:
        d = corpus["sets"][s]["dir"]
        keys = [set(read_kaldi_file(d / f)) for f in CLIP_FILES]
        assert keys[0], f"{s}: no clips"
        assert all(k == keys[0] for k in keys), f"{s}: clip files cover different keys"
        assert read_kaldi_file(d / "utt2spk") == {u: u for u in keys[0]}
        qa_keys = [set(read_kaldi_file(d / "qa" / f)) for f in QA_FILES]
        assert all(k == qa_keys[0] for k in qa_keys) and qa_keys[0]
        assert set(read_kaldi_file(d / "qa" / "qa2utt").values()) <= keys[0]
        tk = [set(read_kaldi_file(d / "text_only" / f)) for f in TEXT_FILES]
        assert all(k == tk[0] for k in tk) and tk[0]
        for utt, path in corpus["sets"][s]["wav"].items():
            assert os.path.isabs(path) and Path(path).is_file(), f"{utt}: {path}"
            assert Path(path).name == f"{utt}.wav"
        assert set(corpus["sets"][s]["cat"].values()) <= CATEGORIES
        total += len(keys[0])
    assert total == 50
    n = {s: len(corpus["sets"][s]["wav"]) for s in SPLITS}
    assert n["train"] > n["valid"] and n["train"] > n["test"]
    assert abs(n["train"] / total - 0.8) < 0.05


def test_metadata_and_rich_caption_fields(corpus):
    for s, utt, meta, st in _all_clips(corpus):
        assert meta["sample_rate"] == SR and meta["layout"] in ("single", "sequence", "overlay")
        assert meta["category"] == st["cat"][utt]
        onsets = [e["onset"] for e in meta["events"]]
        assert onsets == sorted(onsets), f"{utt}: events not in time order"
        for e in meta["events"]:
            assert {"class", "category", "onset", "offset", "attributes"} <= set(e)
            assert 0 <= e["onset"] < e["offset"] <= meta["duration"] + 1e-3
        rich = st["rich"][utt]
        assert rich["keywords"] == [e["class"] for e in meta["events"]]
        assert rich["layout"].startswith(meta["layout"])
        assert rich["description"]
        n_expected = {"single": 1, "overlay": 2}.get(meta["layout"])
        assert n_expected is None or len(meta["events"]) == n_expected


# --------------------------------------------------------------------------- audio truth
def test_masters_match_metadata_and_are_clean(corpus):
    for s, utt, meta, st in _all_clips(corpus):
        x, sr = _read(st["wav"][utt])
        assert sr == SR, utt
        assert x.shape[1] == meta["channels"], f"{utt}: channels differ from metadata"
        assert abs(x.shape[0] / SR - meta["duration"]) < 1e-3, f"{utt}: duration differs"
        assert 2.0 - 1e-3 <= meta["duration"] <= 10.0 + 1e-3
        assert np.max(np.abs(x)) >= 0.05, f"{utt}: silent"
        assert np.sum(np.abs(x) >= 32767 / 32768) == 0, f"{utt}: clipped"
        if x.shape[1] == 2:  # stereo only where a source is stereo
            stereo_src = [e for e in meta["events"] if e["category"] in ("instrument", "drums", "effect")]
            assert stereo_src, f"{utt}: stereo without a stereo source"
        for e in meta["events"]:
            seg = x[int(e["onset"] * SR): int(e["offset"] * SR)]
            assert _rms_db(seg) > -45, f"{utt}: event {e['class']} region is silent"


def test_tone_caption_matches_dominant_frequency(corpus):
    checked = 0
    for s, utt, meta, st in _all_clips(corpus):
        x, _ = _read(st["wav"][utt])
        mono = x.mean(axis=1)
        for e in meta["events"]:
            at = e["attributes"]
            if e["category"] != "tone":
                continue
            end = e["offset"]
            if at.get("role") == "background":  # measure it alone, before the foreground starts
                end = meta["events"][1]["onset"]
            seg = mono[int(e["onset"] * SR) + 2400: int(end * SR) - 2400]
            if "freq" in at:
                spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
                f = np.fft.rfftfreq(len(seg), 1 / SR)[np.argmax(spec)]
                assert abs(f - at["freq"]) < 0.02 * at["freq"] + 2, f"{utt}: {f} Hz vs {at['freq']}"
                if meta["layout"] == "single":
                    assert str(at["freq"]) in st["text"][utt]
            else:  # a sweep: dominant frequency of the first vs last 0.2 s
                def dom(v):
                    return np.fft.rfftfreq(len(v), 1 / SR)[np.argmax(np.abs(np.fft.rfft(v)))]
                a, b = dom(seg[:9600]), dom(seg[-9600:])
                assert (b > a) == (at["direction"] == "rising"), f"{utt}: sweep {a}->{b} vs {at['direction']}"
            checked += 1
    assert checked >= 3


def test_noise_colour_matches_spectral_slope(corpus):
    """white: flat per Hz; pink: flat per octave; brown: falls 6 dB per octave."""
    checked = 0
    for s, utt, meta, st in _all_clips(corpus):
        for e in meta["events"]:
            if e["category"] != "noise" or e["attributes"].get("role") == "foreground":
                continue
            end = meta["events"][1]["onset"] if e["attributes"].get("role") == "background" else e["offset"]
            x, _ = _read(st["wav"][utt])
            seg = x[int(e["onset"] * SR) + 2400: int(end * SR) - 2400].mean(axis=1)
            if len(seg) < 4800:
                continue
            p = np.abs(np.fft.rfft(seg)) ** 2
            f = np.fft.rfftfreq(len(seg), 1 / SR)
            ratio = p[(f >= 4000) & (f < 8000)].sum() / p[(f >= 250) & (f < 500)].sum()
            want = {"white": ratio > 4, "pink": 0.25 < ratio < 4, "brown": ratio < 0.25}
            assert want[e["attributes"]["colour"]], f"{utt}: {e['attributes']['colour']} noise has ratio {ratio:.3f}"
            checked += 1
    assert checked >= 2


def test_rendered_melody_moves_in_its_direction():
    from mini_corpus.render import render_event, SR as RSR
    for direction in ("rising", "falling"):
        ev = {"kind": "melody", "class": "flute", "instrument": "flute", "direction": direction,
              "tempo": "slow", "key": "C", "steps": [2, 2, 2, 1]}
        x = render_event(ev).mean(axis=0)  # [L]
        beat = 60 / 72
        def pitch(i):
            seg = x[int((i * beat + 0.15) * RSR): int((i * beat + 0.6) * RSR)]
            spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n=1 << 16))
            hps = spec[: len(spec) // 3] * spec[::2][: len(spec) // 3] * spec[::3][: len(spec) // 3]
            f = np.fft.rfftfreq(1 << 16, 1 / RSR)[: len(spec) // 3]
            band = (f > 150) & (f < 2000)  # harmonic product spectrum: the fundamental
            return f[band][np.argmax(hps[band])]
        f = [pitch(i) for i in range(5)]
        from mini_corpus.render import melody_notes
        want = [440 * 2 ** ((n - 69) / 12) for n in melody_notes(ev)]
        assert np.allclose(f, want, rtol=0.03), f"{direction}: measured {f}, MIDI notes {want}"
        steps = np.diff(np.log2(f))
        assert (steps > 0).all() if direction == "rising" else (steps < 0).all(), f"{direction}: {f}"


def test_sequence_events_sit_where_metadata_says(corpus):
    checked = 0
    for s, utt, meta, st in _all_clips(corpus):
        if meta["layout"] != "sequence":
            continue
        x, _ = _read(st["wav"][utt])
        ev = meta["events"]
        assert len(ev) in (2, 3)
        for a, b in zip(ev, ev[1:]):
            assert a["offset"] <= b["onset"], f"{utt}: events overlap"
            gap = x[int(a["offset"] * SR) + 240: int(b["onset"] * SR) - 240]
            loud_a = _rms_db(x[int(a["onset"] * SR): int(a["offset"] * SR)])
            loud_b = _rms_db(x[int(b["onset"] * SR): int(b["offset"] * SR)])
            assert loud_a > -45 and loud_b > -45
            assert _rms_db(gap) < min(loud_a, loud_b) - 20, f"{utt}: no silence between events"
        checked += 1
    assert checked >= 2


def test_stage_8_scorer_reads_every_split_metadata_as_written(corpus):
    """Stage 8's event scoring reads the corpus metadata through its own loader: same keys and events."""
    from ualm_tk.scoring.metrics.events import load_metadata
    sequences = 0
    for s in SPLITS:
        meta = load_metadata(corpus["sets"][s]["dir"] / "metadata")
        assert meta == corpus["sets"][s]["meta"], s
        for m in meta.values():
            if m["layout"] == "sequence":
                onsets = [e["onset"] for e in m["events"]]
                assert len(onsets) >= 2 and onsets == sorted(onsets)
                sequences += 1
    assert sequences >= 2


def test_captions_state_generation_parameters(corpus):
    for s, utt, meta, st in _all_clips(corpus):
        cap = st["text"][utt]
        assert cap == cap.strip() and len(cap) > 10
        for e in meta["events"]:
            at = e["attributes"]
            if "text" in at:
                assert f'"{at["text"]}"' in cap, f"{utt}: spoken words not quoted exactly"
            if e["category"] == "instrument":
                assert at["instrument"] in cap
            if e["category"] == "noise":
                assert at["colour"] in cap.lower()
            if e["category"] == "effect" and at["label"] != "notification sound":
                assert at["label"] in cap
        if meta["layout"] == "overlay":
            assert "quiet" in cap

def test_overlay_background_is_quiet(corpus):
    checked = 0
    for s, utt, meta, st in _all_clips(corpus):
        if meta["layout"] != "overlay":
            continue
        bg, fg = meta["events"]
        assert bg["attributes"]["role"] == "background" and bg["onset"] == 0.0
        assert abs(bg["offset"] - meta["duration"]) < 1e-3, f"{utt}: background does not span the clip"
        x, _ = _read(st["wav"][utt])
        alone = _rms_db(x[240: int(fg["onset"] * SR) - 240])
        both = _rms_db(x[int(fg["onset"] * SR): int(fg["offset"] * SR)])
        assert alone > -60, f"{utt}: background inaudible"
        assert both - alone > 8, f"{utt}: background not quiet ({alone:.1f} vs {both:.1f} dBFS)"
        checked += 1
    assert checked >= 1


# --------------------------------------------------------------------------- QA
def test_qa_answers_follow_metadata(corpus):
    seen = set()
    for s in SPLITS:
        st = corpus["sets"][s]
        q, a, qt, q2u = (st["qa"][f] for f in QA_FILES)
        for k in q:
            utt = q2u[k]
            assert k.startswith(f"{utt}-q")
            ev = st["meta"][utt]["events"]
            t, ans = qt[k], a[k]
            seen.add(t)
            speech = [e for e in ev if e["category"].startswith("speech")]
            if t == "event_count":
                assert ans == str(len(ev))
            elif t == "first_event":
                assert ans == ev[0]["class"] and ev[0]["class"] in q[k] and ev[-1]["class"] in q[k]
            elif t == "last_event":
                assert ans == ev[-1]["class"]
            elif t == "is_there_speech":
                assert ans == ("yes" if speech else "no")
            elif t == "what_is_said":
                assert len(speech) == 1 and ans == speech[0]["attributes"]["text"]
            elif t == "background_sound":
                assert ans == ev[0]["class"] and ev[0]["attributes"]["role"] == "background"
            elif t == "which_instrument":
                assert ans in {e["attributes"].get("instrument") for e in ev}
            elif t == "tone_frequency":
                assert ans in {str(e["attributes"].get("freq")) for e in ev}
            qdef = corpus["qtypes"][t]
            if qdef["categorical"]:
                assert ans in qdef["answers"], f"{k}: {ans!r} not in the answer set of {t}"
    assert {"event_count", "is_there_speech", "what_is_said", "first_event"} <= seen


def test_text_only_problems_exact_and_held_out(corpus):
    ids = {}
    for s in SPLITS:
        to = corpus["sets"][s]["text_only"]
        per_clip = 8 if s == "train" else 1  # data.sh's default --text_problems_per_clip on the training split
        assert abs(len(to["question"]) - per_clip * len(corpus["sets"][s]["wav"])) <= per_clip
        ids[s] = set(to["problem_id"].values())
        for k, pid in to["problem_id"].items():
            assert k.startswith(f"text-{s}-")
            kind, *ops = pid.split(":")
            if kind == "cnt":
                want = ops[1].split(",").count(ops[0])
            else:
                n = [int(v) for v in ops]
                want = {"add": lambda: n[0] + n[1], "sub": lambda: n[0] - n[1], "mul": lambda: n[0] * n[1],
                        "two": lambda: n[0] + n[1] - n[2], "fact": lambda: n[0] * n[1] + n[2]}[kind]()
                assert kind != "fact" or s == "train", k  # table facts are training material only
                assert all(str(v) in to["question"][k] for v in n)
            assert to["answer"][k] == str(want), k
            assert to["solution"][k].split()[-1] == str(want), (k, to["solution"][k])
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["valid"])


# --------------------------------------------------------------------------- held-out material
def _combo_rows(e):
    at = e["attributes"]
    if "voice" in at:
        yield "voice_speed", {"voice": at["voice"], "speed": at["speed"]}
    if e["category"] == "instrument":
        yield "instrument_direction_tempo", {k: at[k] for k in ("instrument", "direction", "tempo")}
    if e["category"] == "drums":
        yield "drum_pattern_tempo", {"pattern": at["pattern"], "tempo": at["tempo"]}
    if e["category"] == "tone" and "freq" in at:
        yield "waveform_frequency", {"waveform": at["waveform"], "frequency": at["freq"]}
    if e["category"] == "speech_real":
        yield "asterisk_prompts", {"path": e["source"]}
    if e["category"] == "noise":
        yield "noise_colour_envelope", {"colour": at["colour"], "envelope": at["envelope"]}
    if e["category"] == "effect":
        yield "effect_recordings", {"path": e["source"]}


def test_heldout_never_in_train_and_test_classes_in_train(corpus):
    check_heldout_policy(corpus)


def check_heldout_policy(corpus):
    h = corpus["heldout"]
    seq_pairs = {tuple(p) for p in h["sequence_pairs"]}
    ov_pairs = {tuple(p) for p in h["overlay_pairs"]}
    assert seq_pairs and h["voice_speed"] and h["instrument_direction_tempo"]
    train_classes = set()
    for s, utt, meta, st in _all_clips(corpus, ("train", "valid")):
        ev = meta["events"]
        for e in ev:
            for kind, row in _combo_rows(e):
                assert row not in h[kind], f"{s} {utt} uses held-out {kind} {row}"
            if s == "train":
                train_classes.add(e["class"])
        if meta["layout"] == "sequence":
            for a, b in zip(ev, ev[1:]):
                assert (a["class"], b["class"]) not in seq_pairs, f"{utt}: held-out pair in {s}"
        if meta["layout"] == "overlay":
            assert (ev[1]["class"], ev[0]["class"]) not in ov_pairs, f"{utt}: held-out overlay in {s}"
    novel = 0
    for s, utt, meta, st in _all_clips(corpus, ("test",)):
        ev = meta["events"]
        for e in ev:
            assert e["class"] in train_classes, f"test {utt}: class {e['class']} never in train"
        uses = [row in h[kind] for e in ev for kind, row in _combo_rows(e)]
        if meta["layout"] == "sequence":
            uses += [(a["class"], b["class"]) in seq_pairs for a, b in zip(ev, ev[1:])]
        if meta["layout"] == "overlay":
            uses.append((ev[1]["class"], ev[0]["class"]) in ov_pairs)
        novel += any(uses)
    assert novel == len(corpus["sets"]["test"]["meta"]), "every test clip holds held-out material"


# --------------------------------------------------------------------------- generators
def test_melody_notes_follow_direction():
    from mini_corpus.render import melody_notes
    ev = {"key": "D", "steps": [1, 2, 1, 1, 2], "direction": "rising"}
    up = melody_notes(ev)
    down = melody_notes(dict(ev, direction="falling"))
    assert all(b > a for a, b in zip(up, up[1:])) and all(b < a for a, b in zip(down, down[1:]))
    assert up[0] == 62 and down == up[::-1]


def test_same_seed_same_corpus_whatever_nj(tmp_path):
    corpus_dir, data_dir = tmp_path / "corpus", tmp_path / "data"
    run_data_sh(corpus_dir, data_dir, num_clips=12, nj=1, seed=3)
    first = tmp_path / "first"
    shutil.copytree(data_dir, first / "data")
    shutil.copytree(corpus_dir, first / "corpus")
    run_data_sh(corpus_dir, data_dir, num_clips=12, nj=2, seed=3)
    for s in SPLITS:
        cmp = filecmp.dircmp(first / "data" / s, data_dir / s)
        files = [p.relative_to(data_dir / s) for p in (data_dir / s).rglob("*") if p.is_file()]
        assert len(files) == len(CLIP_FILES) + len(QA_FILES) + len(TEXT_FILES)
        for f in files:
            assert filecmp.cmp(first / "data" / s / f, data_dir / s / f, shallow=False), f"{s}/{f} differs"
        assert not cmp.left_only and not cmp.right_only
    for f in ("heldout.json", "qtypes.json"):
        assert filecmp.cmp(first / "data" / f, data_dir / f, shallow=False)
    wavs = sorted((corpus_dir / "wav").glob("*.wav"))
    assert len(wavs) == 12
    for w in wavs:
        assert filecmp.cmp(first / "corpus" / "wav" / w.name, w, shallow=False), f"{w.name} differs"
    # another seed gives another corpus
    run_data_sh(tmp_path / "c2", tmp_path / "d2", num_clips=12, nj=2, seed=4)
    assert (tmp_path / "d2" / "train" / "text").read_bytes() != (data_dir / "train" / "text").read_bytes()


def test_more_training_clips_leave_valid_test_and_default_train_unchanged(tmp_path):
    """--train_clips grows the training split alone: corpora of different sizes are scored on the same valid
    and test clips, the default training clips stay, and the extra ones obey the held-out policy."""
    run_data_sh(tmp_path / "base" / "corpus", tmp_path / "base" / "data", num_clips=12, nj=2, seed=3)
    run_data_sh(tmp_path / "more" / "corpus", tmp_path / "more" / "data", num_clips=12, nj=2, seed=3,
                extra=["--train_clips", "22"])
    base, more = load_corpus(tmp_path / "base"), load_corpus(tmp_path / "more")
    assert len(base["sets"]["train"]["meta"]) == 10 and len(more["sets"]["train"]["meta"]) == 22
    assert base["heldout"] == more["heldout"]
    for s in SPLITS:
        b, m = base["sets"][s], more["sets"][s]
        if s != "train":
            assert b["meta"] == m["meta"] and b["text"] == m["text"] and b["qa"] == m["qa"], s
            assert b["text_only"] == m["text_only"], s
        for utt in b["meta"]:  # every default clip is there under its name, with the same audio and labels
            assert m["meta"][utt] == b["meta"][utt] and m["text"][utt] == b["text"][utt], f"{s} {utt}"
            assert filecmp.cmp(b["wav"][utt], m["wav"][utt], shallow=False), f"{s} {utt}: audio differs"
    extra = sorted(set(more["sets"]["train"]["meta"]) - set(base["sets"]["train"]["meta"]))
    assert extra == [f"mini-train-{i:05d}" for i in range(10, 22)]
    check_heldout_policy(more)
    res = run_data_sh(tmp_path / "less" / "corpus", tmp_path / "less" / "data", num_clips=12, nj=2, seed=3,
                      extra=["--train_clips", "5"], check=False)
    assert res.returncode != 0 and "--train_clips must be at least the 10 training clips" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--num_clips", "many"], "expects an integer"),
    (["--num_clips", "2"], "at least 3"),
    (["--nj", "0"], "at least 1"),
    (["--train_clips", "-1"], "at least 0"),
    (["--bogus", "1"], "unknown option"),
])
def test_bad_options_fail_before_work(tmp_path, args, message):
    cmd = ["local/data.sh", "--corpus_dir", str(tmp_path / "c"), "--data_dir", str(tmp_path / "d")] + args
    res = subprocess.run(cmd, cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and message in res.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "c").exists()


def test_master_check_rejects_silent_and_clipped_audio(tmp_path):
    from mini_corpus.compose import check_master
    from mini_corpus.render import RenderError
    ev = [{"class": "sine tone", "onset": 0.5, "offset": 2.5}]
    t = np.arange(3 * SR) / SR
    good = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "good.wav", good, SR, subtype="PCM_16")
    assert check_master(tmp_path / "good.wav", ev, 1)["duration"] == 3.0
    sf.write(tmp_path / "silent.wav", good * 1e-3, SR, subtype="PCM_16")
    with pytest.raises(RenderError, match="silent"):
        check_master(tmp_path / "silent.wav", ev, 1)
    sf.write(tmp_path / "clipped.wav", np.clip(5 * good, -1, 1), SR, subtype="PCM_16")
    with pytest.raises(RenderError, match="clipped"):
        check_master(tmp_path / "clipped.wav", ev, 1)
    quiet_event = good.copy()
    quiet_event[int(0.5 * SR): int(2.5 * SR)] = 0.0
    sf.write(tmp_path / "gap.wav", quiet_event, SR, subtype="PCM_16")
    with pytest.raises(RenderError, match="event 'sine tone'"):
        check_master(tmp_path / "gap.wav", ev, 1)
    with pytest.raises(RenderError, match="channels"):
        check_master(tmp_path / "good.wav", ev, 2)


def test_effect_inventory_has_labels_and_skips_unlabelled_or_silent():
    from mini_corpus.inventory import load_effects
    effects = load_effects(REPO)
    names = {Path(e.path).name for e in effects}
    labels = {e.label for e in effects}
    assert "mosquito.ogg" not in names  # tuxpaint stamp without a .txt label
    assert "giraffe.ogg" not in names   # tuxpaint ships it as digital silence
    assert {"dog", "cow", "camera shutter", "canary"} <= labels
    assert all(e.label and e.label == e.label.strip() for e in effects)


def test_speed_buckets_change_speaking_time():
    from mini_corpus.render import render_event
    base = {"kind": "espeak", "class": "speech", "lang": "en-us", "variant": "f2", "pitch": "medium",
            "text": "please meet the quiet farmer at the market"}
    n = {sp: render_event(dict(base, speed=sp)).shape[1] for sp in ("slow", "normal", "fast")}
    assert n["slow"] > 1.15 * n["normal"] > 1.15 * 1.15 * n["fast"], n
    fl = {sp: render_event({"kind": "flite", "class": "speech", "voice": "slt", "speed": sp,
                            "text": base["text"]}).shape[1] for sp in ("slow", "fast")}
    assert fl["slow"] > 1.3 * fl["fast"], fl


def test_replacement_specs_are_deterministic_and_keep_the_recipe():
    from mini_corpus.inventory import default_repo_root, load_asterisk_prompts, load_effects
    from mini_corpus.plan import Planner
    planner = Planner(5, load_asterisk_prompts(), load_effects(default_repo_root()))
    specs = planner.plan(30)
    for spec in specs:
        a, b = planner.replacement(spec, 1), planner.replacement(spec, 1)
        assert a == b and a["utt"] == spec["utt"] and a["recipe"] == spec["recipe"]
        assert a["category"] == spec["category"] and a["split"] == spec["split"]
        if spec["recipe"]["mode"] == "test" and spec["category"] in ("sequence", "overlay"):
            # a held-out composition is replaced by the same held-out pair
            assert [e["class"] for e in a["events"]] == [e["class"] for e in spec["events"]]
