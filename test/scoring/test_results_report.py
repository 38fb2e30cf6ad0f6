"""make_results: one RESULTS.md from stage 7/8 outputs, plots, samples, and errors naming missing files."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ualm_tk.scoring.metrics.result import HIGHER, LOWER


def _metric(name, value, direction, backbone="tagger (exp/scorer_tagger)", sr=16000, details=None):
    return {"name": name, "value": value, "direction": direction, "backbone": backbone, "sample_rate": sr,
            "num_items": 3, "details": details or {}}


def _wavs(d: Path, keys, seed) -> Path:
    rng = np.random.default_rng(seed)
    (d / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in keys:
        sf.write(d / "wav" / f"{k}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
        lines.append(f"{k} {d / 'wav' / (k + '.wav')}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    return d / "wav.scp"


def _audio_scores(fd):
    return {"FD[scorer_tagger]": _metric("FD", fd, LOWER),
            "KL[scorer_tagger]": _metric("KL_sigmoid", fd / 10, LOWER, details={"direction": "KL(ref || gen)"}),
            "CLAP[scorer_clap_mini]": _metric("CLAP", 0.3, HIGHER, backbone="clap_mini (exp/scorer_clap_mini)")}


@pytest.fixture
def recipe(tmp_path):
    keys = ["u1", "u2", "u3"]
    ref = tmp_path / "dump" / "audio" / "test"
    _wavs(ref, keys, 0)
    (ref / "text").write_text("u1 a dog barks\nu2 a bell rings\nu3 rain falls\n")
    dec = tmp_path / "exp" / "ualm_x" / "decode_t"
    d = dec / "caption_to_audio_test"
    _wavs(d, keys, 1)
    _wavs(d / "vae", keys, 2)
    (d / "wav_vae.scp").write_text((d / "vae" / "wav.scp").read_text())
    (d / "scores.json").write_text(json.dumps(_audio_scores(40.0)))
    (d / "scores_vae.json").write_text(json.dumps(_audio_scores(35.0)))
    (d / "heldout_loss.json").write_text(json.dumps({
        "metric": "teacher-forced cross-entropy", "num_examples": 3, "num_frames": 90, "uniform_nats": 4.85,
        "model": {"mean": 3.1}, "unigram": {"mean": 4.2}}))
    q = dec / "audio_qa_test"
    q.mkdir()
    (q / "scores_understanding.json").write_text(json.dumps({
        "metric": "exact match", "task": "audio_qa", "num_examples": 3, "accuracy": 2 / 3, "num_categorical": 3,
        "accuracy_categorical": 2 / 3, "per_qtype": {"count": {"categorical": True, "n": 3, "accuracy": 2 / 3,
                                                               "chance_majority": 1 / 3, "chance_uniform": 0.25}}}))
    for name, fd in (("ground_truth", 0.0), ("codec", 5.0), ("vae", 4.0)):
        c = tmp_path / "exp" / "ceilings_test" / name
        _wavs(c, keys, 3)
        (c / "scores.json").write_text(json.dumps(_audio_scores(fd)))
    return tmp_path, dec


def _make(root: Path, dec: Path, *extra):
    cmd = [sys.executable, "-m", "ualm_tk.bin.make_results", "--exp_dirs", str(dec), "--sets", "test",
           "--tasks", "audio_qa", "caption_to_audio", "--ceilings_root", str(root / "exp"),
           "--audio_dump", str(root / "dump" / "audio"), "--num_samples", "2", "--out", str(root / "RESULTS.md"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_results_page_puts_model_next_to_ceilings_with_protocol(recipe):
    root, dec = recipe
    r = _make(root, dec)
    assert r.returncode == 0, r.stderr
    md = (root / "RESULTS.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| FD[scorer_tagger] |")]
    assert [ln.split(" | ")[1] for ln in rows] == [
        "ualm_x/decode_t", "ualm_x/decode_t + VAE", "ceiling: ground-truth test audio",
        "ceiling: codec resynthesis of the ground truth", "ceiling: codec resynthesis + VAE enhancement"]
    assert all("lower is better" in ln and "16000 Hz" in ln and "tagger (exp/scorer_tagger)" in ln for ln in rows)
    assert "KL(ref || gen)" in md
    assert "| ualm_x/decode_t | 3.100 | 4.200 | 4.850 |" in md  # held-out loss vs unigram and uniform
    assert "| count | yes | 3 | 66.7 | 33.3 | 25.0 |" in md  # accuracy with chance levels
    for png in ("metrics_test.png", "spectrograms_test.png"):
        assert (root / "results_images" / png).read_bytes()[:4] == b"\x89PNG"
    samples = sorted(p.name for p in (root / "results_samples" / "test").iterdir())
    assert samples == ["u1.generated.wav", "u1.generated_vae.wav", "u1.reference.wav",
                       "u2.generated.wav", "u2.generated_vae.wav", "u2.reference.wav"]


@pytest.mark.parametrize("victim", ["caption_to_audio_test/scores_vae.json", "audio_qa_test/scores_understanding.json",
                                    "caption_to_audio_test/heldout_loss.json", "../../ceilings_test/codec/scores.json"])
def test_missing_input_is_an_error_naming_it(recipe, victim):
    root, dec = recipe
    path = (dec / victim).resolve()
    path.unlink()
    r = _make(root, dec)
    assert r.returncode != 0
    assert f"{path} is missing" in r.stderr
    assert not (root / "RESULTS.md").exists()


def test_missing_decode_dir_is_an_error(recipe):
    root, dec = recipe
    r = _make(root, dec, "--tasks", "audio_to_caption")
    assert r.returncode != 0 and f"{dec}/audio_to_caption_test is missing" in r.stderr


def test_a_new_page_drops_the_plots_and_samples_of_the_last(recipe):
    root, dec = recipe
    assert _make(root, dec).returncode == 0 and list((root / "results_images").glob("*.png"))
    r = _make(root, dec, "--tasks", "audio_qa")
    assert r.returncode == 0, r.stderr
    assert not list((root / "results_images").glob("*.png")) and not list((root / "results_samples").rglob("*.wav"))
    md = (root / "RESULTS.md").read_text()
    assert "audio_qa: ualm_x/decode_t" in md and "caption_to_audio" not in md.split("Made by")[1].split("\n", 1)[1]
