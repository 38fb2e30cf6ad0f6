"""The toolkit's own scorers (tagger, clap_mini): registry round trip, posterior shapes and rates,
and the scorer_train / scorer_evaluate entry points on a tiny corpus of sox-synthesised clips."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ualm_tk.scoring.models import (
    ScorerCapabilityError, build_scorer, load_scorer, save_scorer, scorer_choices,
)
from ualm_tk.scoring.models.corpus import compute_logmels, read_clips
from ualm_tk.scoring.models.training import train

SR = 16000
# (utt, sox synth args, events [(class, onset, offset)], caption)
CLIPS = [
    ("c0", ["sine", "440"], [("sine tone", 0.0, 2.0)], "A steady sine tone at 440 Hz."),
    ("c1", ["whitenoise"], [("white noise", 0.0, 2.0)], "Hissing white noise."),
    ("c2", ["square", "300"], [("square tone", 0.0, 2.0)], "A buzzing square wave tone."),
    ("c3", ["sine", "880"], [("sine tone", 0.0, 2.0)], "A high sine tone at 880 Hz."),
    ("c4", ["pinknoise"], [("pink noise", 0.0, 2.0)], "Soft pink noise."),
    ("c5", ["brownnoise"], [("brown noise", 0.0, 2.0)], "Rumbling brown noise."),
]


def _sox(out: Path, synth, seconds=2.0, gain=-12):
    subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), "synth", str(seconds), *synth,
                    "gain", str(gain)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """data dir (metadata, text) + audio dir (wav.scp) with a 3-event clip (sine, then silence, then noise)."""
    root = tmp_path_factory.mktemp("scorer_corpus")
    data, audio = root / "data", root / "audio"
    (audio / "wav").mkdir(parents=True)
    data.mkdir()
    scp, meta, text = [], [], []
    for utt, synth, events, cap in CLIPS:
        _sox(audio / "wav" / f"{utt}.wav", synth)
        scp.append(f"{utt} {audio / 'wav' / (utt + '.wav')}")
        meta.append(f"{utt} " + json.dumps({"events": [{"class": c, "onset": a, "offset": b} for c, a, b in events]}))
        text.append(f"{utt} {cap}")
    # a sequence: 0.5 s sine, 0.5 s silence, 1 s white noise
    _sox(root / "a.wav", ["sine", "440"], 0.5)
    _sox(root / "b.wav", ["whitenoise"], 1.0)
    subprocess.run(["sox", str(root / "a.wav"), str(root / "b.wav"), str(audio / "wav" / "c6.wav"), "pad", "0.5@0.5"],
                   check=True, capture_output=True)
    scp.append(f"c6 {audio / 'wav' / 'c6.wav'}")
    meta.append("c6 " + json.dumps({"events": [{"class": "sine tone", "onset": 0.0, "offset": 0.5},
                                               {"class": "white noise", "onset": 1.0, "offset": 2.0}]}))
    text.append("c6 A sine tone, then white noise.")
    (audio / "wav.scp").write_text("\n".join(scp) + "\n")
    (data / "metadata").write_text("\n".join(meta) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    return data, audio


TINY = dict(n_mels=32, mel_pool=2, channels=[16, 16], strides=[2, 2], d_model=16, num_layers=1, num_heads=2,
            ffn_dim=32, dropout=0.0)


def _tiny(name, clips):
    cls = scorer_choices.get_class(name)
    conf = dict(TINY)
    if name == "clap_mini":
        conf.update(embed_dim=8, text_d_model=16, text_layers=1, text_heads=2, text_ffn_dim=32)
    return build_scorer(name, cls.conf_from_data(conf, clips))


@pytest.mark.parametrize("name", ["tagger", "clap_mini"])
def test_train_two_steps_save_load_same_outputs(name, corpus, tmp_path):
    torch.manual_seed(0)
    clips = read_clips(*corpus, need_events=True, need_captions=True)
    model = _tiny(name, clips)
    feats = compute_logmels(clips, model.frontend)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train(model, clips, feats, clips, feats, tmp_path / "run", batch_size=4, max_epochs=1,
                    lr=1e-2, warmup_steps=1, seed=0)
    assert summary["steps_per_epoch"] == 2
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "training changed nothing"
    save_scorer(model, tmp_path / "scorer")
    loaded = load_scorer(tmp_path / "scorer")
    assert type(loaded) is type(model)
    wav, sr = sf.read(str(clips[6].wav_path), dtype="float32")
    np.testing.assert_allclose(loaded.embed(wav, sr), model.embed(wav, sr), rtol=1e-5, atol=1e-6)
    if name == "tagger":
        np.testing.assert_allclose(loaded.frame_posteriors(wav, sr)[0], model.frame_posteriors(wav, sr)[0],
                                   rtol=1e-5, atol=1e-6)
        assert loaded.class_names == sorted({e[0] for c in CLIPS for e in c[2]} | {"white noise"})
    else:
        assert loaded.score("a sine tone", wav, sr) == pytest.approx(model.score("a sine tone", wav, sr), abs=1e-5)
        assert -1.0 <= loaded.score("a sine tone", wav, sr) <= 1.0
        np.testing.assert_allclose(np.linalg.norm(loaded.embed_text("brown noise")), 1.0, atol=1e-5)


def test_tagger_frame_posterior_shapes_rates_and_resampling(corpus):
    clips = read_clips(*corpus, need_events=True)
    tagger = _tiny("tagger", clips).eval()
    wav, sr = sf.read(str(clips[0].wav_path), dtype="float32")  # 2.0 s at 16 kHz
    probs, rate, names = tagger.frame_posteriors(wav, sr)
    assert rate == 12.5 and names == tagger.class_names
    assert probs.shape == (26, len(names))  # 201 log-mel frames / 8, rounded up
    assert ((probs >= 0) & (probs <= 1)).all()
    clip_p, _ = tagger.clip_posteriors(wav, sr)
    assert clip_p.shape == (len(names),)
    # the same clip at 44.1 kHz stereo gives the same number of frames after resampling
    import torchaudio
    wav44 = torchaudio.functional.resample(torch.from_numpy(wav), SR, 44100)
    stereo = torch.stack([wav44, wav44])  # [2, L]
    assert tagger.frame_posteriors(stereo, 44100)[0].shape == probs.shape
    assert tagger.embed(wav, sr).shape == (16,)
    fast = build_scorer("tagger", dict(TINY, strides=[2, 1], class_names=names)).eval()
    p25, r25, _ = fast.frame_posteriors(wav, sr)
    assert r25 == 25.0 and p25.shape == (51, len(names))
    with pytest.raises(ScorerCapabilityError, match="embed_text"):
        tagger.embed_text("a dog")


def test_frame_targets_follow_onset_offset(corpus):
    from ualm_tk.scoring.models.corpus import frame_targets
    clips = read_clips(*corpus, need_events=True)
    seq = [c for c in clips if c.utt == "c6"][0]
    y = frame_targets(seq.events, {"sine tone": 0, "white noise": 1}, 26, 12.5).numpy()
    assert y[:7, 0].all() and not y[7:, 0].any()  # 0-0.5 s -> frames 0..6 (frame 6 covers 0.48-0.56 s)
    assert y[12:25, 1].all() and not y[:12, 1].any()  # 1.0-2.0 s -> frames 12..24
    assert not y[25].any()  # frame 25 covers 2.00-2.08 s, after both events


def _write_cfg(path, name, epochs):
    conf = dict(TINY)
    if name == "clap_mini":
        conf.update(embed_dim=8, text_d_model=16, text_layers=1, text_heads=2, text_ffn_dim=32)
    path.write_text(yaml.safe_dump(dict(scorer=name, scorer_conf=conf, batch_size=4, max_epochs=epochs, lr=0.01,
                                        warmup_steps=1)))


def test_scorer_train_resume_and_evaluate_cli(corpus, tmp_path, capsys):
    from ualm_tk.bin import scorer_evaluate, scorer_train
    data, audio = corpus
    cfg = tmp_path / "tagger.yaml"
    _write_cfg(cfg, "tagger", 2)
    out = tmp_path / "scorer_tagger"
    base = ["--config", str(cfg), "--data_dirs", str(data), "--audio_dirs", str(audio),
            "--valid_data_dir", str(data), "--valid_audio_dir", str(audio), "--output_dir", str(out)]
    scorer_train.main(base + ["--max_epochs", "1"])
    log1 = json.loads((out / "train_log.json").read_text())
    assert len(log1["history"]) == 1 and (out / "cache").is_dir()
    scorer_train.main(base)  # resumes at epoch 1, runs epoch 2 only
    log2 = json.loads((out / "train_log.json").read_text())
    assert [h["epoch"] for h in log2["history"]] == [1, 2]
    thr = log2["after_training"]["threshold"]  # chosen on the validation clips, stored with the model
    assert 0.1 <= thr <= 0.7 and load_scorer(out).threshold == thr
    assert log2["history"][0] == log1["history"][0]
    scorer_evaluate.main(["--scorer_dir", str(out), "--data_dir", str(data), "--audio_dir", str(audio)])
    md = (out / "RESULTS.md").read_text()
    assert "exact-set accuracy" in md and "mAP" in md and "frame F1" in md
    res = json.loads((out / "results.json").read_text())["data"]["tagging"]
    assert res["num_clips"] == 7 and res["num_events"] == 8
    assert 0.0 <= res["exact_set_accuracy"] <= 1.0 and 0.0 <= res["mAP"] <= 1.0
    # majority set of the 7 clips: {sine tone} occurs twice
    assert res["chance"]["exact_set_accuracy_majority_set"] == pytest.approx(2 / 7)

    # clap_mini, its audio tower initialised from the tagger just trained
    ccfg = tmp_path / "clap.yaml"
    _write_cfg(ccfg, "clap_mini", 1)
    cout = tmp_path / "scorer_clap"
    scorer_train.main(["--config", str(ccfg), "--data_dirs", str(data), "--audio_dirs", str(audio),
                       "--valid_data_dir", str(data), "--valid_audio_dir", str(audio), "--output_dir", str(cout),
                       "--cache_dir", str(out / "cache"), "--init_from", str(out)])
    scorer_evaluate.main(["--scorer_dir", str(cout), "--data_dir", str(data), "--audio_dir", str(audio),
                          "--set_name", "tiny"])
    r = json.loads((cout / "results.json").read_text())["tiny"]["retrieval"]
    assert r["chance"]["R@1"] == pytest.approx(1 / 7) and r["chance"]["R@10"] == 1.0
    assert r["text_to_audio"]["R@10"] == 1.0  # 7 clips: every caption's clip is in the top 10
    assert r["text_to_audio_strict"]["R@1"] <= r["text_to_audio"]["R@1"]
    assert "R@5" in (cout / "RESULTS.md").read_text()


def test_scorer_train_rejects_bad_config(corpus, tmp_path):
    from ualm_tk.bin import scorer_train
    data, audio = corpus
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("scorer: panns\n")
    with pytest.raises(SystemExit, match="not trainable"):
        scorer_train.main(["--config", str(cfg), "--data_dirs", str(data), "--audio_dirs", str(audio),
                           "--valid_data_dir", str(data), "--valid_audio_dir", str(audio), "--output_dir",
                           str(tmp_path / "o")])
    cfg.write_text("scorer: tagger\nmax_epoch: 3\n")
    with pytest.raises(SystemExit, match="unknown keys"):
        scorer_train.main(["--config", str(cfg), "--data_dirs", str(data), "--audio_dirs", str(audio),
                           "--valid_data_dir", str(data), "--valid_audio_dir", str(audio), "--output_dir",
                           str(tmp_path / "o")])
