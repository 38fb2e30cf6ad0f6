"""Stage 5a's tempo augmentation that moves rate labels (ualm_tk.audio_encoder.tempo_relabel)."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ualm_tk.audio_encoder.qa_pretrain import LabelledClip
from ualm_tk.audio_encoder.tempo_relabel import TempoRelabel, TempoRelabelError, time_stretch
from ualm_tk.data.kaldi_files import write_kaldi_file
from ualm_tk.scoring.models.corpus import Event

SR = 16000
TINY_LM = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"
QTYPES = ["speech_rate", "voice_pitch", "drum_tempo"]
ANSWERS = {"speech_rate": ["fast", "normal", "slow"], "voice_pitch": ["high", "low", "medium"],
           "drum_tempo": ["fast", "medium", "slow"]}
RATES = {"speech_rate": {"slow": 125, "normal": 165, "fast": 215}, "drum_tempo": {"slow": 72, "medium": 108, "fast": 150}}


def bursts(rate_hz: float, freq: float, seconds: float) -> np.ndarray:
    """Tone bursts of 60 ms at ``freq`` Hz, ``rate_hz`` of them a second."""
    x = np.zeros(int(seconds * SR), np.float32)
    burst = 0.5 * np.sin(2 * np.pi * freq * np.arange(int(0.06 * SR)) / SR) * np.hanning(int(0.06 * SR))
    for start in np.arange(0.05, seconds - 0.07, 1.0 / rate_hz):
        i = int(start * SR)
        x[i : i + len(burst)] += burst.astype(np.float32)
    return x


def burst_onsets(x: np.ndarray) -> np.ndarray:
    """Times (s) where the 10-ms energy envelope rises through half its peak."""
    env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(160) / 160, mode="same"))
    above = env > 0.5 * env.max()
    return np.flatnonzero(above[1:] & ~above[:-1]) / SR


def test_time_stretch_changes_the_tempo_not_the_pitch():
    x = bursts(3.0, 440.0, 3.0)
    y = time_stretch(x, SR, 1.5)  # 1.5 times as fast
    assert len(y) == pytest.approx(len(x) / 1.5, rel=0.01)
    assert np.median(np.diff(burst_onsets(y))) == pytest.approx(np.median(np.diff(burst_onsets(x))) / 1.5, rel=0.05)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)
    z = time_stretch(tone, SR, 0.75)
    peak_hz = np.fft.rfftfreq(len(z), 1 / SR)[np.abs(np.fft.rfft(z)).argmax()]
    assert len(z) == pytest.approx(len(tone) / 0.75, rel=0.01) and peak_hz == pytest.approx(440, rel=0.01)
    with pytest.raises(ValueError, match="ratio must be > 0"):
        time_stretch(x, SR, 0.0)


def relabel(**kw) -> TempoRelabel:
    conf = dict(rates=RATES, qtypes=QTYPES, answers=ANSWERS, prob=0.5, max_ratio=1.6)
    conf.update(kw)
    return TempoRelabel.from_conf(**conf)


def lab(qtype: str, answer: str):
    return QTYPES.index(qtype), ANSWERS[qtype].index(answer)


def test_a_rate_label_moves_to_its_neighbours_and_nothing_else_moves():
    r = relabel()
    normal = [lab("voice_pitch", "low"), lab("speech_rate", "normal")]
    moves = {round(ratio, 3): labels for ratio, labels in r.moves(normal)}
    assert moves == {round(215 / 165, 3): [lab("voice_pitch", "low"), lab("speech_rate", "fast")],
                     round(125 / 165, 3): [lab("voice_pitch", "low"), lab("speech_rate", "slow")]}
    # slow -> fast is 1.72x, beyond max_ratio 1.6: only the neighbour
    assert [labels for _, labels in r.moves([lab("speech_rate", "slow")])] == [[lab("speech_rate", "normal")]]
    assert len(relabel(max_ratio=2.0).moves([lab("speech_rate", "slow")])) == 2
    # no rate label, or two (speech over drums: one stretch cannot move both by their own ratios): no copy
    assert r.moves([lab("voice_pitch", "high")]) == []
    assert r.moves([lab("speech_rate", "fast"), lab("drum_tempo", "slow")]) == []
    assert r.active and not relabel(prob=0.0).active and not relabel(rates={}).active


def test_a_stretched_clip_carries_its_events_along():
    x = bursts(2.0, 300.0, 2.0)
    clip = LabelledClip("u1", x, [lab("drum_tempo", "slow")], [Event("drums", 0.4, 1.2)])
    fast = clip.stretched(1.5, [lab("drum_tempo", "medium")], SR)
    assert fast.labels == [lab("drum_tempo", "medium")] and fast.utt == "u1"
    assert (fast.events[0].onset, fast.events[0].offset) == pytest.approx((0.4 / 1.5, 1.2 / 1.5))
    assert len(fast.wav) == pytest.approx(len(x) / 1.5, rel=0.01)


@pytest.mark.parametrize("kw, message", [
    (dict(rates={"speaking_speed": {"slow": 1, "fast": 2}}), "'speaking_speed' is not a categorical question type"),
    (dict(rates={"speech_rate": {"slow": 1, "quick": 2}}), r"tempo_rates.speech_rate: 'quick' is not an answer"),
    (dict(rates={"speech_rate": {"slow": 1, "fast": "2x"}}), r"tempo_rates.speech_rate.fast: the rate must be a number"),
    (dict(rates={"speech_rate": {"slow": 1}}), "at least two answers"),
    (dict(rates=[1, 2]), "tempo_rates must map"),
    (dict(prob=1.5), r"tempo_prob must be in \[0, 1\]"),
    (dict(max_ratio=1.0), "tempo_max_ratio must be a number > 1"),
])
def test_bad_tempo_settings_name_the_key(kw, message):
    with pytest.raises(TempoRelabelError, match=message):
        relabel(**kw)


def make_confounded_set(d: Path, combos, n: int):
    """Burst trains whose tempo ("slow" 2/s, "fast" 4/s) comes with one pitch per ``combos`` entry, 1.5-5 s long
    (so that the length of a stretched copy does not give its tempo away); questions: the tempo and the pitch."""
    rng = np.random.default_rng(len(combos) + n)
    (d / "wavs").mkdir(parents=True)
    wav, q2u, qtype, answer, question = {}, {}, {}, {}, {}
    for i in range(n):
        tempo, pitch = combos[i % len(combos)]
        utt = f"{d.name}-{i:03d}"
        x = bursts({"slow": 2.0, "fast": 4.0}[tempo], {"low": 300.0, "high": 1200.0}[pitch] * rng.uniform(0.97, 1.03),
                   float(rng.uniform(1.5, 5.0)))
        sf.write(d / "wavs" / f"{utt}.wav", x, SR)
        wav[utt] = str(d / "wavs" / f"{utt}.wav")
        for j, (qt, a) in enumerate((("beat_tempo", tempo), ("beat_pitch", pitch))):
            qid = f"{utt}-q{j}"
            q2u[qid], qtype[qid], answer[qid], question[qid] = utt, qt, a, "?"
    write_kaldi_file(d / "wav.scp", wav)
    for name, tab in (("qa2utt", q2u), ("qtype", qtype), ("answer", answer), ("question", question)):
        write_kaldi_file(d / "qa" / name, tab)


def test_training_batches_swap_in_stretched_copies_with_their_new_label(repo_root, tmp_path, monkeypatch):
    """Stage 5a with ``tempo_rates``: about ``tempo_prob`` of the clips that have a rate label reach the loss as a
    copy stretched by the ratio of the two answers, carrying the new tempo answer and the old pitch answer;
    the same batches on a second run (seeded by epoch and batch, as a resumed run needs)."""
    from ualm_tk.audio_encoder import qa_pretrain
    from ualm_tk.bin.audio_encoder_pretrain import main

    make_confounded_set(tmp_path / "train", [("slow", "low"), ("fast", "high")], 24)
    make_confounded_set(tmp_path / "valid", [("slow", "high"), ("fast", "low")], 8)
    answers = {"beat_tempo": ["fast", "slow"], "beat_pitch": ["high", "low"]}
    (tmp_path / "qtypes.json").write_text(json.dumps({q: dict(categorical=True, answers=a) for q, a in answers.items()}))
    (tmp_path / "pre.yaml").write_text("max_epochs: 3\nbatch_size: 8\ndropout: 0.0\ntempo_prob: 0.5\n"
                                       "tempo_rates: {beat_tempo: {slow: 2, fast: 4}}\ntempo_max_ratio: 2.5\n")
    originals = {u: len(sf.read(p)[0]) for u, p in
                 (line.split(" ", 1) for line in (tmp_path / "train" / "wav.scp").read_text().splitlines())}
    real = qa_pretrain.batch_loss

    def run(name):
        seen = []

        def batch_loss(model, clips, *args, **kwargs):
            seen.extend((c.utt, len(c.wav), sorted(c.labels)) for c in clips)
            return real(model, clips, *args, **kwargs)

        monkeypatch.setattr(qa_pretrain, "batch_loss", batch_loss)
        main(["--lm_config", str(repo_root / TINY_LM), "--config", str(tmp_path / "pre.yaml"),
              "--qtypes", str(tmp_path / "qtypes.json"), "--train_dir", str(tmp_path / "train"),
              "--valid_dir", str(tmp_path / "valid"), "--output_dir", str(tmp_path / name), "--num_threads", "1"])
        return seen

    seen = run("a")
    assert len(seen) == 3 * 24
    swapped = 0
    for utt, n, labels in seen:
        tempo, pitch = ("slow", "low") if int(utt.split("-")[1]) % 2 == 0 else ("fast", "high")
        (_, a_tempo), (_, a_pitch) = labels  # (qtype index, answer index): beat_tempo 0, beat_pitch 1
        assert answers["beat_pitch"][a_pitch] == pitch  # the pitch answer never moves
        if answers["beat_tempo"][a_tempo] == tempo:
            assert n == originals[utt]
        else:  # slow -> fast: half as long; fast -> slow: twice as long
            swapped += 1
            assert n == pytest.approx(originals[utt] * (0.5 if tempo == "slow" else 2.0), rel=0.01)
    assert 0.3 <= swapped / len(seen) <= 0.7
    assert run("b") == seen




@pytest.mark.parametrize("line, message", [
    ("tempo_prob: 0.5\ntempo_rates: {beat_speed: {slow: 2, fast: 4}}\n", "'beat_speed' is not a categorical question type"),
    ("cpu_bf16: maybe\n", "cpu_bf16: expected auto, true or false, got 'maybe'"),
])
def test_stage_5a_refuses_bad_tempo_and_precision_settings_by_name(repo_root, tmp_path, line, message):
    from ualm_tk.bin.audio_encoder_pretrain import main

    for split in ("train", "valid"):
        make_confounded_set(tmp_path / split, [("slow", "low"), ("fast", "high")], 4)
    (tmp_path / "qtypes.json").write_text(json.dumps({"beat_tempo": dict(categorical=True, answers=["fast", "slow"])}))
    (tmp_path / "pre.yaml").write_text("max_epochs: 1\n" + line)
    with pytest.raises(SystemExit, match=message):
        main(["--lm_config", str(repo_root / TINY_LM), "--config", str(tmp_path / "pre.yaml"),
              "--qtypes", str(tmp_path / "qtypes.json"), "--train_dir", str(tmp_path / "train"),
              "--valid_dir", str(tmp_path / "valid"), "--output_dir", str(tmp_path / "out"), "--num_threads", "1"])
