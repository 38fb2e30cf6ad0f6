"""score_dir: a decode directory scored against a data directory, with strict key checks."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from ualm_tk.audio.io import load_audio, save_audio
from ualm_tk.data.kaldi_files import write_kaldi_file
from ualm_tk.scoring.metrics import KeyMismatchError
from ualm_tk.scoring.score_dir import ScoringInputError, score_directory

PROMPTS = ["agent-loginok", "agent-newlocation", "all-circuits-busy-now"]
SOUNDS = Path("/usr/share/asterisk/sounds/en")
SNR_DB = 20.0


@pytest.fixture()
def dirs(tmp_path):
    """ref data dir (real speech prompts + captions) and a decode dir (noisy copies at 20 dB SNR + captions)."""
    if not all((SOUNDS / f"{p}.wav").is_file() for p in PROMPTS):
        pytest.skip("asterisk sounds are not installed")
    ref, hyp = tmp_path / "data" / "test", tmp_path / "decode" / "test"
    rng = np.random.default_rng(0)
    wavs, hyp_wavs = {}, {}
    for i, p in enumerate(PROMPTS):
        key = f"utt{i}"
        wavs[key] = str(SOUNDS / f"{p}.wav")
        x, sr = load_audio(wavs[key])
        n = rng.standard_normal(x.shape).astype(np.float32)
        n *= np.sqrt((x ** 2).mean() / (n ** 2).mean() / 10 ** (SNR_DB / 10))
        save_audio(hyp / "wav" / f"{key}.wav", x + n, sr, subtype="FLOAT")
        hyp_wavs[key] = f"wav/{key}.wav"  # relative to the list's directory
    write_kaldi_file(ref / "wav.scp", wavs)
    write_kaldi_file(hyp / "wav.scp", hyp_wavs)
    write_kaldi_file(ref / "text", {"utt0": "agent logged in", "utt1": "please enter your new location",
                                    "utt2": "all circuits are busy now"})
    write_kaldi_file(hyp / "text", {"utt0": "agent logged in", "utt1": "please enter the location",
                                    "utt2": "all circuits are busy now"})
    return ref, hyp


def _run(args, env, cwd):
    return subprocess.run(["python", "-m", "ualm_tk.scoring.score_dir", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_cli_scores_audio_and_text(dirs, subprocess_env, tmp_path):
    ref, hyp = dirs
    p = _run(["--hyp_dir", str(hyp), "--ref_dir", str(ref), "--audio_metrics", "si_sdr", "mel_distance", "pesq",
              "stoi", "--meteor", "false"], subprocess_env, tmp_path)
    assert p.returncode == 0, p.stderr
    scores = json.loads((hyp / "scores.json").read_text())
    assert scores["si_sdr"]["value"] == pytest.approx(SNR_DB, abs=0.5)  # white noise at 20 dB SNR
    assert scores["si_sdr"]["sample_rate"] == 8000 and scores["si_sdr"]["num_items"] == 3
    assert scores["si_sdr"]["direction"] == "higher is better"
    assert scores["mel_distance"]["direction"] == "lower is better" and scores["mel_distance"]["value"] > 0
    assert 1.0 < scores["pesq"]["value"] < 4.5 and scores["pesq"]["sample_rate"] == 16000
    assert 0.5 < scores["stoi"]["value"] < 1.0
    assert 0.0 < scores["BLEU_1"]["value"] < 1.0 and scores["BLEU_1"]["sample_rate"] is None
    assert "METEOR" not in scores
    per_key = json.loads((hyp / "scores_per_key.json").read_text())
    assert per_key["ROUGE_L"]["utt0"] == pytest.approx(1.0) and per_key["ROUGE_L"]["utt1"] < 1.0
    assert sorted(per_key["si_sdr"]) == ["utt0", "utt1", "utt2"]
    table = (hyp / "RESULTS.md").read_text()
    assert "| si_sdr |" in table and "pesq 0.0.4" in table


def test_missing_and_extra_keys_fail_with_the_keys_named(dirs, subprocess_env, tmp_path):
    ref, hyp = dirs
    write_kaldi_file(hyp / "wav.scp", {"utt0": "wav/utt0.wav", "utt1": "wav/utt1.wav"})
    p = _run(["--hyp_dir", str(hyp), "--ref_dir", str(ref), "--captions", "false"], subprocess_env, tmp_path)
    assert p.returncode != 0
    assert "1 key(s) of" in p.stderr and "missing from" in p.stderr and "utt2" in p.stderr
    assert not (hyp / "scores.json").exists()
    write_kaldi_file(hyp / "wav.scp", {"utt0": "wav/utt0.wav", "utt1": "wav/utt1.wav", "utt2": "wav/utt2.wav",
                                       "utt9": "wav/utt2.wav"})
    with pytest.raises(KeyMismatchError, match=r"not in .*wav.scp: utt9"):
        score_directory(hyp, ref, captions=False)
    write_kaldi_file(hyp / "wav.scp", {"utt0": "wav/utt0.wav", "utt1": "wav/utt1.wav", "utt2": "wav/gone.wav"})
    with pytest.raises(ScoringInputError, match=r"key 'utt2'\): audio file does not exist: wav/gone.wav"):
        score_directory(hyp, ref, captions=False)
    (hyp / "wav.scp").unlink()
    write_kaldi_file(hyp / "text", {"utt0": "agent logged in", "utt1": "x"})
    with pytest.raises(KeyMismatchError, match="missing from .*text: utt2"):
        score_directory(hyp, ref, meteor=False)


# --- model-based metrics through the callable interfaces, with a real (fixed, signal-processing) tagger and embedder
SR = 16000
TONES = {"low tone": 300.0, "high tone": 2000.0}


class BandTagger:
    """Frame posteriors from band energy around each class's frequency (a real, fixed detector)."""
    name = "band-energy tagger"
    sample_rate = SR

    def __call__(self, wav, sr):  # wav [1, L] -> probs [T, C]
        spec = torch.stft(torch.as_tensor(wav[0]), 512, 160, window=torch.hann_window(512), return_complex=True).abs()
        freqs = torch.linspace(0, sr / 2, spec.shape[0])
        rows = [spec[(freqs - f).abs() < 100].pow(2).sum(0) for f in TONES.values()]  # [T] each
        energy = torch.stack(rows, dim=1)  # [T, C]
        probs = torch.sigmoid(10 * (torch.log10(energy + 1e-8) - 1.0))
        return probs.numpy(), sr / 160, list(TONES)


class MelEmbedder:
    """Mean log-mel vector of a clip (a fixed front end, no training)."""
    name = "mean log-mel (32 bands)"
    sample_rate = SR

    def __call__(self, wav, sr):
        mel = torchaudio.transforms.MelSpectrogram(sr, n_fft=512, hop_length=160, n_mels=32)(torch.as_tensor(wav[0]))
        return torch.log(mel + 1e-5).mean(dim=1).numpy()


def _tone_clip(first, second, rng):
    t = np.arange(int(0.6 * SR)) / SR
    seg = lambda f: 0.3 * np.sin(2 * np.pi * f * t)
    gap = np.zeros(int(0.2 * SR))
    x = np.concatenate([gap, seg(TONES[first]), gap, seg(TONES[second]), gap])
    return (x + 0.001 * rng.standard_normal(len(x))).astype(np.float32)[None]


def test_event_order_and_fd_through_model_interfaces(tmp_path):
    rng = np.random.default_rng(0)
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    meta, ref_scp, hyp_scp = {}, {}, {}
    for i in range(4):
        key, order = f"k{i}", (["low tone", "high tone"] if i % 2 == 0 else ["high tone", "low tone"])
        meta[key] = json.dumps({"layout": "sequence", "events": [
            {"class": order[0], "onset": 0.2, "offset": 0.8}, {"class": order[1], "onset": 1.0, "offset": 1.6}]})
        save_audio(ref / f"{key}.wav", _tone_clip(*order, rng), SR)
        # the generated clips play the right tones, but the last two in the wrong order
        save_audio(hyp / f"{key}.wav", _tone_clip(*(order if i < 2 else order[::-1]), rng), SR)
        ref_scp[key], hyp_scp[key] = str(ref / f"{key}.wav"), str(hyp / f"{key}.wav")
    write_kaldi_file(ref / "metadata", meta)
    write_kaldi_file(ref / "wav.scp", ref_scp)
    write_kaldi_file(hyp / "wav.scp", hyp_scp)
    r = score_directory(hyp, ref, audio_metrics=(), tagger=BandTagger(), audio_embedder=MelEmbedder())
    assert r["event_recall"].value == 1.0 and r["event_precision"].value == 1.0
    assert r["event_order_accuracy"].value == pytest.approx(0.5)
    assert r["event_order_accuracy"].backbone == "band-energy tagger" and r["event_order_accuracy"].sample_rate == SR
    assert r["FD"].backbone == "mean log-mel (32 bands)" and r["FD"].value >= 0
    same = score_directory(ref, ref, audio_metrics=(), tagger=BandTagger(), audio_embedder=MelEmbedder())
    assert same["event_order_accuracy"].value == 1.0
    assert same["FD"].value == pytest.approx(0.0, abs=1e-6)


class BandClassifier:
    """Clip-level single-label logits: log band energy of each tone over the whole clip."""
    name = "band-energy classifier"
    sample_rate = SR
    kind = "softmax_logits"

    def __call__(self, wav, sr):
        probs, _, _ = BandTagger()(wav, sr)
        return np.log(probs.sum(axis=0) + 1e-3)  # [C]


def test_kl_and_inception_score_through_the_classifier_interface(tmp_path):
    rng = np.random.default_rng(1)
    ref, good, bad = tmp_path / "ref", tmp_path / "good", tmp_path / "bad"
    scps = {d: {} for d in (ref, good, bad)}
    t = np.arange(SR) / SR
    for i in range(10):
        key, tone = f"k{i:02d}", TONES["low tone" if i % 2 else "high tone"]
        clip = (0.3 * np.sin(2 * np.pi * tone * t) + 0.001 * rng.standard_normal(SR)).astype(np.float32)[None]
        other = TONES["high tone" if i % 2 else "low tone"]
        wrong = (0.3 * np.sin(2 * np.pi * other * t)).astype(np.float32)[None]
        for d, x in ((ref, clip), (good, clip * 0.5), (bad, wrong)):
            save_audio(d / f"{key}.wav", x, SR)
            scps[d][key] = str(d / f"{key}.wav")
    for d, entries in scps.items():
        write_kaldi_file(d / "wav.scp", entries)
    g = score_directory(good, ref, audio_metrics=(), clip_classifier=BandClassifier())
    b = score_directory(bad, ref, audio_metrics=(), clip_classifier=BandClassifier(), kl_direction="gen||ref")
    assert g["KL"].value < 0.05 < 1.0 < b["KL"].value
    assert g["KL"].details["direction"] == "KL(ref || gen)" and b["KL"].details["direction"] == "KL(gen || ref)"
    # one clip per split, each confidently one of 2 classes, alternating: every split has p(y) = one-hot -> IS ~ 1
    assert g["IS"].value == pytest.approx(1.0, abs=0.05) and g["IS"].details["splits"] == 10
    two = score_directory(good, ref, audio_metrics=(), clip_classifier=BandClassifier(), is_splits=5)
    assert two["IS"].value > 1.8  # two clips of different classes per split: IS near 2


def test_nothing_to_score_is_an_error(dirs):
    ref, hyp = dirs
    (hyp / "text").unlink()
    with pytest.raises(ScoringInputError, match="nothing was scored"):
        score_directory(hyp, ref)  # audio only, no paired metrics asked for, no models
    with pytest.raises(ScoringInputError, match="holds neither wav.scp nor text"):
        score_directory(ref.parent, ref)


def test_scorer_registry_model_plugs_in(tmp_path, subprocess_env):
    """The toolkit's own tagger class (untrained, tiny) through scorer_interfaces: every metric it can feed."""
    from ualm_tk.scoring.models.tagger import Tagger
    from ualm_tk.scoring.score_dir import scorer_interfaces

    torch.manual_seed(0)
    tagger = Tagger(class_names=sorted(TONES), channels=[4, 8], d_model=16, num_layers=1, num_heads=2, ffn_dim=32)
    tagger.eval()
    rng = np.random.default_rng(2)
    ref, meta, scp = tmp_path / "ref", {}, {}
    for i in range(3):
        key = f"k{i}"
        save_audio(ref / f"{key}.wav", _tone_clip("low tone", "high tone", rng), SR)
        scp[key] = str(ref / f"{key}.wav")
        meta[key] = json.dumps({"layout": "sequence", "events": [
            {"class": "low tone", "onset": 0.2, "offset": 0.8}, {"class": "high tone", "onset": 1.0, "offset": 1.6}]})
    write_kaldi_file(ref / "wav.scp", scp)
    write_kaldi_file(ref / "metadata", meta)
    kw = scorer_interfaces(tagger, "tagger (untrained test model)")
    assert sorted(kw) == ["audio_embedder", "clip_classifier", "tagger"]
    r = score_directory(ref, ref, audio_metrics=(), **kw)
    assert sorted(r) == ["FD", "KL", "event_order_accuracy", "event_precision", "event_recall"]
    assert r["FD"].value == pytest.approx(0.0, abs=1e-6) and r["KL"].value == pytest.approx(0.0, abs=1e-9)
    assert r["KL"].details["posterior"] == "multilabel_probs"
    assert all(x.backbone == "tagger (untrained test model)" and x.sample_rate == 16000 for x in r.values())
    assert 0.0 <= r["event_recall"].value <= 1.0
    # the same through the command line, the model restored from its component directory
    from ualm_tk.scoring.models import save_scorer

    save_scorer(tagger, tmp_path / "scorer_tagger")
    p = _run(["--hyp_dir", str(ref), "--ref_dir", str(ref), "--scorer_dir", str(tmp_path / "scorer_tagger")],
             subprocess_env, tmp_path)
    assert p.returncode == 0, p.stderr
    scores = json.loads((ref / "scores.json").read_text())
    assert sorted(scores) == sorted(r)
    assert scores["KL"]["backbone"].startswith("tagger (") and scores["KL"]["details"]["direction"] == "KL(ref || gen)"
    assert scores["event_recall"]["value"] == pytest.approx(r["event_recall"].value)
