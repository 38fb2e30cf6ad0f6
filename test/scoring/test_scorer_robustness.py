"""What makes the toolkit's own scorers usable on codec audio: a level-invariant front end
(``level_norm: peak``), a frequency-shift-aware conv stem, and training on several audio copies of
one labelled set (clean + codec resynthesis) with clear errors on real key mistakes."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ualm_tk.scoring.models import build_scorer, load_scorer
from ualm_tk.scoring.models.corpus import CorpusError, compute_logmels, read_clip_sets
from ualm_tk.scoring.models.evaluation import evaluate_tagging
from ualm_tk.scoring.models.frontend import LogMel

SR = 16000
# (utt, sox synth args, class)
CLIPS = [("r0", ["sine", "440"], "sine tone"), ("r1", ["whitenoise"], "white noise"),
         ("r2", ["square", "300"], "square tone"), ("r3", ["sine", "880"], "sine tone")]
TINY = dict(n_mels=32, mel_pool=2, channels=[16], strides=[1], stem_channels=[4, 8], d_model=16, num_layers=1,
            num_heads=2, ffn_dim=32, dropout=0.0, level_norm="peak")


def _sox(out: Path, synth, extra=()):
    subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), "synth", "1.5", *synth,
                    "gain", "-6", *extra], check=True, capture_output=True)


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory):
    """One data dir (metadata, text) and two audio copies of its clips: clean, and a degraded one
    (low-passed at 3 kHz and 12 dB quieter, as the codec's reconstruction is) under the same utt ids."""
    root = tmp_path_factory.mktemp("two_copies")
    data = root / "data"
    data.mkdir()
    meta, text = [], []
    for copy, extra in (("clean", ()), ("codec", ("lowpass", "3000", "gain", "-12"))):
        (root / copy / "wav").mkdir(parents=True)
        scp = []
        for utt, synth, cls in CLIPS:
            wav = root / copy / "wav" / f"{utt}.wav"
            _sox(wav, synth, extra)
            scp.append(f"{utt} {wav}")
        (root / copy / "wav.scp").write_text("\n".join(scp) + "\n")
    for utt, _, cls in CLIPS:
        meta.append(f"{utt} " + json.dumps({"category": "tone" if "tone" in cls else "noise",
                                            "events": [{"class": cls, "onset": 0.0, "offset": 1.5}]}))
        text.append(f"{utt} A {cls}.")
    (data / "metadata").write_text("\n".join(meta) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    return data, root / "clean", root / "codec"


def _tiny(name, clips):
    from ualm_tk.scoring.models import scorer_choices
    conf = dict(TINY)
    if name == "clap_mini":
        conf.update(embed_dim=8, text_d_model=16, text_layers=1, text_heads=2, text_ffn_dim=32)
    torch.manual_seed(0)
    return build_scorer(name, scorer_choices.get_class(name).conf_from_data(conf, clips)).eval()


def test_peak_level_norm_makes_logmel_level_invariant():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(SR) / SR
    wav = (0.3 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn(SR, generator=g))[None]  # [1, L]
    quiet = wav * 10 ** (-12 / 20)
    peak = LogMel(SR, 32, level_norm="peak")
    np.testing.assert_allclose(peak(quiet).numpy(), peak(wav).numpy(), atol=1e-4)
    assert float(peak(wav).max()) == pytest.approx(1.0) and float(peak(wav).min()) >= -1.0
    np.testing.assert_allclose(peak(torch.zeros(1, SR)).numpy(), -1.0)  # silence stays silence, not full scale
    legacy = LogMel(SR, 32)  # absolute level: the -12 dB copy shifts by 12 / 40 = 0.3
    assert float((legacy(wav) - legacy(quiet)).mean()) == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="level_norm"):
        LogMel(SR, 32, level_norm="rms")


@pytest.mark.parametrize("name", ["tagger", "clap_mini"])
def test_scorer_outputs_do_not_depend_on_level(name, two_copies):
    data, clean, _ = two_copies
    clips = read_clip_sets([data], [clean], need_events=True, need_captions=True)
    model = _tiny(name, clips)
    wav, sr = sf.read(str(clips[0].wav_path), dtype="float32")
    quiet = wav * 10 ** (-12 / 20)
    np.testing.assert_allclose(model.embed(quiet, sr), model.embed(wav, sr), atol=1e-4)
    if name == "tagger":
        np.testing.assert_allclose(model.frame_posteriors(quiet, sr)[0], model.frame_posteriors(wav, sr)[0], atol=1e-4)
        assert model.frame_rate == 12.5  # mel_pool 2 x stem 2 x 2 -> 100 / 8
    else:
        assert model.score("a sine tone", quiet, sr) == pytest.approx(model.score("a sine tone", wav, sr), abs=1e-4)
    # the legacy front end does depend on it (so the check above can fail)
    legacy = build_scorer(name, dict(model.conf, level_norm="none")).eval()
    legacy.load_state_dict(model.state_dict())
    assert np.abs(legacy.embed(quiet, sr) - legacy.embed(wav, sr)).max() > 1e-2


def test_two_audio_copies_of_one_set_share_labels_under_unique_keys(two_copies, tmp_path):
    data, clean, codec = two_copies
    clips = read_clip_sets([data, data], [clean, codec], need_events=True)
    assert [c.key for c in clips] == ["r0", "r1", "r2", "r3", "r0@copy2", "r1@copy2", "r2@copy2", "r3@copy2"]
    assert [c.utt for c in clips[4:]] == ["r0", "r1", "r2", "r3"]
    assert [c.labels for c in clips[4:]] == [c.labels for c in clips[:4]]
    assert all(c.wav_path.parent.parent == codec for c in clips[4:])
    model = _tiny("tagger", clips)
    feats = compute_logmels(clips, model.frontend, tmp_path / "cache.pt")
    assert len(feats) == 8
    # the copies are different audio (low-passed), not the same file read twice
    assert not torch.allclose(feats["r0"].float(), feats["r0@copy2"].float(), atol=0.05)


def test_key_mistakes_across_copies_fail_clearly(two_copies, tmp_path):
    data, clean, codec = two_copies
    with pytest.raises(CorpusError, match=r"wav.scp: given twice"):
        read_clip_sets([data, data], [clean, clean])
    other = tmp_path / "other_data"  # another set that reuses the utt ids with other labels
    other.mkdir()
    (other / "metadata").write_text("".join(
        f"{u} " + json.dumps({"events": [{"class": "dog", "onset": 0.0, "offset": 1.0}]}) + "\n" for u, _, _ in CLIPS))
    with pytest.raises(CorpusError, match=r"key 'r0' of data dir .*other_data is also a key of data dir .*data"):
        read_clip_sets([data, other], [clean, codec], need_events=True)
    with pytest.raises(CorpusError, match="2 data dirs but 1 audio dirs"):
        read_clip_sets([data, data], [clean])


def test_scorer_train_on_clean_and_codec_copies(two_copies, tmp_path, python_exe, subprocess_env):
    data, clean, codec = two_copies
    cfg = tmp_path / "tagger.yaml"
    cfg.write_text(yaml.safe_dump(dict(scorer="tagger", scorer_conf=TINY, batch_size=4, max_epochs=1, lr=0.01,
                                       warmup_steps=1)))
    out = tmp_path / "scorer"
    base = [python_exe, "-m", "ualm_tk.bin.scorer_train", "--config", str(cfg), "--valid_data_dir", str(data),
            "--output_dir", str(out)]
    subprocess.run(base + ["--data_dirs", str(data), str(data), "--audio_dirs", str(clean), str(codec),
                           "--valid_audio_dir", str(clean), str(codec)],
                   check=True, capture_output=True, env=subprocess_env)
    log = json.loads((out / "train_log.json").read_text())
    assert log["num_train"] == 8 and log["num_valid"] == 8 and log["steps_per_epoch"] == 2
    tagger = load_scorer(out)
    assert tagger.frontend.level_norm == "peak" and tagger.conf["stem_channels"] == [4, 8]
    res = evaluate_tagging(tagger, read_clip_sets([data], [codec], need_events=True), subsets={"tones": ["r0", "r2"]})
    assert set(res["by_category"]) == {"tone", "noise"} and res["by_category"]["tone"]["num_clips"] == 3
    assert res["by_subset"]["tones"]["num_clips"] == 2 and res["by_subset"]["not tones"]["num_clips"] == 2
    assert res["seen_classes"]["num_clips"] == 4
    bad = subprocess.run(base[:-2] + ["--output_dir", str(tmp_path / "bad"), "--data_dirs", str(data), str(data),
                                      "--audio_dirs", str(clean), str(clean), "--valid_audio_dir", str(clean)],
                         capture_output=True, text=True, env=subprocess_env)
    assert bad.returncode != 0 and "given twice" in bad.stderr


def _logmel_of(synth, tmp_path, name):
    wav = tmp_path / f"{name}.wav"
    _sox(wav, synth)
    x, _ = sf.read(wav, dtype="float32")
    return LogMel(SR, 64, "peak")(torch.from_numpy(x)[None])[0]  # [64, N]


def test_pitch_warp_turns_a_tone_into_the_same_tone_an_octave_up(tmp_path):
    from ualm_tk.scoring.models.frontend import pitch_warp

    waves = ["sine", "square", "triangle", "sawtooth"]
    at440 = {w: _logmel_of([w, "440"], tmp_path, f"{w}440") for w in waves}
    at880 = {w: _logmel_of([w, "880"], tmp_path, f"{w}880") for w in waves}

    def dist(a, b):  # mean absolute difference of the time-averaged spectra
        return float((a.mean(1) - b.mean(1)).abs().mean())

    assert torch.allclose(pitch_warp(at440["square"], 1.0), at440["square"], atol=1e-6)
    for w in waves:
        warped = pitch_warp(at440[w], 2.0)
        assert warped.shape == at440[w].shape and float(warped.max()) == pytest.approx(float(at440[w].max()))
        # closer to the real 880 Hz tone than the 440 Hz one is, and nearest to the same waveform at 880 Hz:
        # what is left to tell tones apart is the waveform, not the pitch
        assert dist(warped, at880[w]) < 0.8 * dist(at440[w], at880[w]), w
        assert min(waves, key=lambda o: dist(warped, at880[o])) == w
    # shifting down leaves the top bands at the floor (nothing above Nyquist moves in)
    down = pitch_warp(at880["square"], 0.5, floor=-1.0)
    assert torch.all(down[-8:] == -1.0)


def test_tagger_pitch_shift_augments_only_the_named_categories_and_only_in_training(two_copies, tmp_path):
    from ualm_tk.scoring.models.corpus import pad_logmels

    data, clean, _ = two_copies
    clips = read_clip_sets([data], [clean], need_events=True)
    feats = compute_logmels(clips, LogMel(SR, 32, "peak"), tmp_path / "cache.pt")
    x, lengths = pad_logmels([feats[c.key] for c in clips])
    torch.manual_seed(0)
    tagger = build_scorer("tagger", dict(_tiny("tagger", clips).conf, pitch_shift_semitones=12.0,
                                         pitch_shift_categories=["tone"]))
    tagger.train()
    out = tagger.augment(x, lengths, clips)
    for i, c in enumerate(clips):
        changed = not torch.equal(out[i], x[i])
        assert changed == (c.category == "tone"), (c.utt, c.category)
    assert torch.equal(tagger.eval().augment(x, lengths, clips), x)  # never at evaluation
    with pytest.raises(ValueError, match="pitch_shift_categories"):
        build_scorer("tagger", dict(tagger.conf, pitch_shift_categories=[]))
