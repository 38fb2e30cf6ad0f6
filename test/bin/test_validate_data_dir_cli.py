"""The validate_data_dir command: output format and exit codes seen by shell scripts."""
import subprocess

from ualm_tk.data.kaldi_files import write_kaldi_file


def run(python_exe, env, *args):
    return subprocess.run(
        [python_exe, "-m", "ualm_tk.bin.validate_data_dir", *map(str, args)],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_cli_lists_every_problem_and_exits_1(tmp_path, python_exe, subprocess_env):
    d = tmp_path / "data" / "dev"
    write_kaldi_file(d / "wav.scp", {"u1": str(tmp_path / "u1.wav"), "u2": str(tmp_path / "u2.wav")})
    (d / "text").write_bytes(b"u1 a bell rings\nu2  \n")
    (d / "utt2num_samples").write_bytes(b"u1 16000\nu2 x\n")
    (d / "README").write_text("about this set\n")
    (tmp_path / "u1.wav").write_bytes(b"")  # exists; u2.wav does not
    proc = run(python_exe, subprocess_env, d)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"{d}/text:2: key 'u2': empty caption",
        f"{d}/utt2num_samples:2: key 'u2': not a positive integer: 'x'",
        f"{d}/wav.scp:2: key 'u2': audio file does not exist: {tmp_path}/u2.wav",
        f"FAILED: {d}: 3 problem(s)",
    ]
    assert f"{d}/README: unknown file (not checked)" in proc.stderr

    proc = run(python_exe, subprocess_env, d, "--check_audio_exists", "false")
    assert proc.returncode == 1 and len(proc.stdout.splitlines()) == 3


def test_cli_ok(tmp_path, python_exe, subprocess_env):
    d = tmp_path / "d"
    write_kaldi_file(d / "wav.scp", {"u1": "/nowhere/u1.wav"})
    write_kaldi_file(d / "text", {"u1": "a bell rings"})
    proc = run(python_exe, subprocess_env, d, "--check_audio_exists", "false")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == f"OK: {d}: 1 utterances, files: text wav.scp\n"
