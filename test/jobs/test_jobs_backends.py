"""The job interface through both backends (local and a real local Slurm cluster)."""
import re

from jobs_testlib import log_lines, run_backend

FOOTER_OK = re.compile(r"^# Ended \(code 0\) at \S+ \S+ +\d+ \d\d:\d\d:\d\d \S+ \d{4}$")


def assert_kaldi_log(path, command, code=0):
    lines = log_lines(path)
    assert lines[0] == f"# {command}"
    assert re.match(r"^# Started at \S+ \S+ +\d+ \d\d:\d\d:\d\d \S+ \d{4}$", lines[1]), lines[1]
    assert re.match(r"^# Accounting: time=\d+ threads=\d+$", lines[-2]), lines[-2]
    assert re.match(rf"^# Ended \(code {code}\) at ", lines[-1]), lines[-1]
    return lines


def test_array_job_substitutes_job_everywhere(backend, tmp_path):
    name, prefix, env = backend
    cmd = "echo JOB > out.JOB; echo stdout-JOB; echo stderr-JOB >&2"
    p = run_backend(prefix, ["JOB=1:4", "exp/log/echo.JOB.log", cmd], tmp_path, env)
    assert p.returncode == 0, p.stderr
    for i in range(1, 5):
        lines = assert_kaldi_log(tmp_path / f"exp/log/echo.{i}.log", cmd.replace("JOB", str(i)))
        assert f"stdout-{i}" in lines and f"stderr-{i}" in lines
        assert FOOTER_OK.match(lines[-1])
        if name == "slurm":
            assert re.match(rf"^# Slurm job \d+_{i} on \S+$", lines[2]), lines[2]
        assert (tmp_path / f"out.{i}").read_text() == f"{i}\n"
    if name == "slurm":
        script = (tmp_path / "exp/log/q/echo.sh").read_text()
        assert "--array=1-4" in script and "sbatch" in script
        assert sorted(f.name for f in (tmp_path / "exp/log/q").glob("echo_*.out")) == [
            f"echo_{i}.out" for i in range(1, 5)]


def test_one_failing_task_fails_the_call_and_names_its_log(backend, tmp_path):
    _, prefix, env = backend
    cmd = "echo JOB > out.JOB; test JOB -ne 3"
    p = run_backend(prefix, ["JOB=1:4", "log/f.JOB.log", cmd], tmp_path, env)
    assert p.returncode != 0
    assert "1 / 4 failed, log is in log/f.3.log" in p.stderr, p.stderr
    assert re.search(r"failed tasks: 3 \(code 1\)$", p.stderr, re.M), p.stderr
    assert_kaldi_log(tmp_path / "log/f.3.log", "echo 3 > out.3; test 3 -ne 3", code=1)
    for i in (1, 2, 4):  # the others still ran to the end
        assert_kaldi_log(tmp_path / f"log/f.{i}.log", cmd.replace("JOB", str(i)), code=0)
        assert (tmp_path / f"out.{i}").read_text() == f"{i}\n"


def test_range_3_to_5_runs_exactly_those_tasks(backend, tmp_path):
    _, prefix, env = backend
    p = run_backend(prefix, ["JOB=3:5", "log/r.JOB.log", "echo JOB-of-range > out.JOB"], tmp_path, env)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "log").glob("r.*.log")) == ["r.3.log", "r.4.log", "r.5.log"]
    for i in (3, 4, 5):
        assert (tmp_path / f"out.{i}").read_text() == f"{i}-of-range\n"
    assert not (tmp_path / "out.1").exists()


def test_single_job_form_substitutes_nothing(backend, tmp_path):
    _, prefix, env = backend
    cmd = "echo JOB and $((6 * 7)) | tr a-z A-Z > single.txt"
    p = run_backend(prefix, ["log/single.log", cmd], tmp_path, env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "single.txt").read_text() == "JOB AND 42\n"
    assert_kaldi_log(tmp_path / "log/single.log", cmd)


def test_stale_log_of_an_earlier_run_is_not_trusted(backend, tmp_path):
    _, prefix, env = backend
    (tmp_path / "log").mkdir()
    (tmp_path / "log/s.2.log").write_text("# old\n# Ended (code 0) at Sat Jan  1 00:00:00 UTC 2000\n")
    p = run_backend(prefix, ["JOB=1:2", "log/s.JOB.log", "test JOB -eq 1"], tmp_path, env)
    assert p.returncode != 0
    assert "1 / 2 failed, log is in log/s.2.log" in p.stderr
    assert log_lines(tmp_path / "log/s.2.log")[0] == "# test 2 -eq 1"
