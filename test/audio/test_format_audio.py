"""format_audio on a shard mixing good and bad files: reasons, outputs, resume, determinism."""
import os
import subprocess

import numpy as np
import soundfile as sf

from ualm_tk.bin import format_audio
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file

from stage2_fixtures import EXPECTED_KEPT_SAMPLES, EXPECTED_REJECTED, tone

ARGS = ["--fs", "16000", "--channels", "mono", "--min_dur", "0.5", "--max_dur", "3", "--silence_db", "-60"]


def run_cli(python_exe, env, scp, out, *extra):
    cmd = [python_exe, "-m", "ualm_tk.bin.format_audio", "--wav_scp", str(scp), "--out_dir", str(out), *ARGS, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_mixed_shard_every_key_kept_or_rejected_with_reason(mixed_shard, tmp_path, python_exe, subprocess_env):
    scp_path, scp = mixed_shard
    out = tmp_path / "out"
    proc = run_cli(python_exe, subprocess_env, scp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert "kept 4 of 12" in proc.stderr

    kept = read_kaldi_file(out / "wav.scp")
    rejected = read_kaldi_file(out / "rejected")
    assert set(kept) | set(rejected) == set(scp) and not set(kept) & set(rejected)
    assert set(kept) == set(EXPECTED_KEPT_SAMPLES)
    for key, want in EXPECTED_REJECTED.items():
        assert rejected[key].startswith(want), (key, rejected[key])
    assert rejected["bad_missing"] == f"missing file: {scp['bad_missing']}"
    assert rejected["bad_corrupt"] == "unreadable: Error in WAV file. No 'data' chunk marker."

    nsamp = read_kaldi_file(out / "utt2num_samples")
    assert read_kaldi_file(out / "master.scp") == {k: scp[k] for k in kept}
    for key, path in kept.items():
        assert path == str(out / "wav" / f"{key}.wav")
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        info = sf.info(path)
        assert (sr, data.shape[1], info.subtype) == (16000, 1, "PCM_16")
        assert data.shape[0] == EXPECTED_KEPT_SAMPLES[key] == int(nsamp[key])
    # nothing written for rejected keys
    assert sorted(os.listdir(out / "wav")) == sorted(f"{k}.wav" for k in kept)


def test_downmix_and_resample_keep_the_signal(mixed_shard, tmp_path):
    scp_path, _ = mixed_shard
    out = tmp_path / "out"
    assert format_audio.main(["--wav_scp", str(scp_path), "--out_dir", str(out), *ARGS]) == 0
    # 48 kHz stereo of 440 Hz + 660 Hz at 0.3 each -> mono average 0.15 * (sin 440 + sin 660)
    y, sr = sf.read(out / "wav" / "good_48k_stereo.wav", dtype="float32")
    ref = tone(16000, 2.0, channels=2).mean(axis=1)
    mid = slice(1000, -1000)  # away from the filter's edge transients
    assert np.max(np.abs(y[mid] - ref[mid])) < 2e-3  # PCM_16 rounding + filter ripple
    # 8 kHz upsampled: the 440 Hz tone survives, nothing above 4 kHz appears
    y8, _ = sf.read(out / "wav" / "good_8k_flac.wav", dtype="float32")
    spec = np.abs(np.fft.rfft(y8 * np.hanning(len(y8))))
    freqs = np.fft.rfftfreq(len(y8), 1 / 16000)
    assert abs(freqs[np.argmax(spec)] - 440) < 2
    assert spec[freqs > 4100].max() < 1e-3 * spec.max()


def test_resume_recomputes_only_missing_or_broken_outputs(mixed_shard, tmp_path):
    scp_path, _ = mixed_shard
    out = tmp_path / "out"
    cmd = ["--wav_scp", str(scp_path), "--out_dir", str(out), *ARGS]
    assert format_audio.main(cmd) == 0
    wavs = {k: out / "wav" / f"{k}.wav" for k in EXPECTED_KEPT_SAMPLES}
    before = {k: p.stat().st_mtime_ns for k, p in wavs.items()}
    content = {k: p.read_bytes() for k, p in wavs.items()}
    wavs["good_48k_stereo"].unlink()
    # a truncated output (e.g. copied by hand) must be recomputed too
    wavs["good_8k_flac"].write_bytes(content["good_8k_flac"][:1000])
    truncated_mtime = wavs["good_8k_flac"].stat().st_mtime_ns
    assert format_audio.main(cmd) == 0
    after = {k: p.stat().st_mtime_ns for k, p in wavs.items()}
    assert after["good_16k_mono"] == before["good_16k_mono"]
    assert after["good_22k_ogg"] == before["good_22k_ogg"]
    assert after["good_8k_flac"] != truncated_mtime
    for k in wavs:  # recomputed outputs are byte-identical (deterministic)
        assert wavs[k].read_bytes() == content[k], k
    assert set(read_kaldi_file(out / "wav.scp")) == set(EXPECTED_KEPT_SAMPLES)

    # changed parameters: nothing is reused
    mtimes = {k: p.stat().st_mtime_ns for k, p in wavs.items()}
    assert format_audio.main(cmd + ["--subtype", "PCM_24"]) == 0
    assert all(p.stat().st_mtime_ns != mtimes[k] for k, p in wavs.items())
    assert sf.info(str(wavs["good_16k_mono"])).subtype == "PCM_24"


def test_resume_does_not_reuse_output_of_a_changed_master(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 1.0), 16000)
    write_kaldi_file(tmp_path / "wav.scp", {"a": str(src)})
    out = tmp_path / "out"
    cmd = ["--wav_scp", str(tmp_path / "wav.scp"), "--out_dir", str(out), *ARGS]
    assert format_audio.main(cmd) == 0
    assert read_kaldi_file(out / "utt2num_samples") == {"a": "16000"}
    sf.write(src, tone(16000, 2.0), 16000)  # the master changed (longer)
    assert format_audio.main(cmd) == 0
    assert read_kaldi_file(out / "utt2num_samples") == {"a": "32000"}
    sf.write(src, np.zeros((16000, 1), np.float32), 16000)  # now silent: old output removed
    os.utime(src, None)
    assert format_audio.main(cmd) == 0
    assert read_kaldi_file(out / "wav.scp") == {}
    assert "silent" in read_kaldi_file(out / "rejected")["a"]
    assert not (out / "wav" / "a.wav").exists()


def test_flac_output_keep_channels_and_determinism(mixed_shard, tmp_path):
    scp_path, _ = mixed_shard
    outs = []
    for name in ("o1", "o2"):
        out = tmp_path / name
        args = ["--wav_scp", str(scp_path), "--out_dir", str(out), *ARGS, "--audio_format", "flac", "--channels", "keep"]
        assert format_audio.main(args) == 0
        outs.append(out)
    p = outs[0] / "wav" / "good_48k_stereo.flac"
    info = sf.info(str(p))
    assert (info.format, info.samplerate, info.channels, info.frames) == ("FLAC", 16000, 2, 32000)
    for key in EXPECTED_KEPT_SAMPLES:
        a = (outs[0] / "wav" / f"{key}.flac").read_bytes()
        assert a == (outs[1] / "wav" / f"{key}.flac").read_bytes(), key
    assert (outs[0] / "rejected").read_bytes().replace(b"o1", b"") == (outs[1] / "rejected").read_bytes().replace(
        b"o2", b""
    )


def test_bad_wav_scp_and_bad_options_fail_clearly(tmp_path, caplog):
    scp = tmp_path / "wav.scp"
    scp.write_text("b /x/b.wav\na /x/a.wav\n")
    assert format_audio.main(["--wav_scp", str(scp), "--out_dir", str(tmp_path / "o")]) == 1
    assert f"{scp}:2 (key 'a'): keys not sorted" in caplog.text
    caplog.clear()
    scp.write_text("a /x/a.wav\n")
    assert format_audio.main(["--wav_scp", str(scp), "--out_dir", str(tmp_path / "o"), "--min_dur", "5",
                              "--max_dur", "2"]) == 2
    assert "--min_dur" in caplog.text


def test_bad_key_is_rejected_not_crashing(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(16000, 1.0), 16000)
    # a key with '/' cannot name an output file
    (tmp_path / "wav.scp").write_text(f"a/b {src}\nok {src}\n")
    out = tmp_path / "out"
    assert format_audio.main(["--wav_scp", str(tmp_path / "wav.scp"), "--out_dir", str(out), *ARGS]) == 0
    assert read_kaldi_file(out / "rejected") == {"a/b": "bad key: cannot be used as a file name"}
    assert set(read_kaldi_file(out / "wav.scp")) == {"ok"}


def test_changed_parameters_remove_old_outputs_before_a_possible_kill(mixed_shard, tmp_path):
    """Once new parameters are on record, no output made with the old ones may remain to be reused."""
    from ualm_tk.audio.formatter import FormatConfig, ShardFormatter

    scp_path, _ = mixed_shard
    out = tmp_path / "out"
    assert format_audio.main(["--wav_scp", str(scp_path), "--out_dir", str(out), *ARGS]) == 0
    assert len(list((out / "wav").iterdir())) == 4
    # what a re-run with other thresholds does before its first clip (and before it could be killed)
    ShardFormatter(out, FormatConfig(max_dur=3.0, silence_db=-90.0)).prepare()
    assert list((out / "wav").iterdir()) == []
    # the same parameters again: outputs are kept for reuse
    assert format_audio.main(["--wav_scp", str(scp_path), "--out_dir", str(out), *ARGS]) == 0
    ShardFormatter(out, FormatConfig(max_dur=3.0, silence_db=-60.0)).prepare()
    assert len(list((out / "wav").iterdir())) == 4


def test_killed_job_rerun_reuses_finished_clips(tmp_path, python_exe, subprocess_env):
    """SIGKILL a real format_audio process mid-shard; the re-run completes and reuses its work."""
    import signal
    import time

    scp = {}
    n = 40
    for i in range(n):
        p = tmp_path / "src" / f"c{i:03d}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, tone(48000, 1.0, freq=200 + i, channels=2), 48000)
        scp[f"c{i:03d}"] = str(p)
    write_kaldi_file(tmp_path / "wav.scp", scp)
    out = tmp_path / "out"
    cmd = [python_exe, "-m", "ualm_tk.bin.format_audio", "--wav_scp", str(tmp_path / "wav.scp"), "--out_dir", str(out)]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if (out / "wav").is_dir() and len(list((out / "wav").glob("*.wav"))) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in (out / "wav").glob("*.wav")}
    assert 2 <= len(done) < n, len(done)
    assert not (out / "wav.scp").exists()  # an unfinished shard has no wav.scp

    rerun = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"kept {n} of {n} (reused {len(done)})" in rerun.stderr
    assert all((out / "wav" / n).stat().st_mtime_ns == t for n, t in done.items())
    assert sorted(p.name for p in (out / "wav").iterdir()) == [f"c{i:03d}.wav" for i in range(n)]
    assert read_kaldi_file(out / "utt2num_samples") == {k: "16000" for k in scp}
