"""utils/run_local.py: behaviour only the local backend has (concurrency bound, time limit, signals)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs_testlib import UTILS, log_lines, run_backend

RUN_LOCAL = [str(UTILS / "run_local.py")]


def max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def test_max_jobs_run_bounds_concurrency(tmp_path):
    (tmp_path / "t").mkdir()
    cmd = "date +%s.%N > t/JOB.start; sleep 0.3; date +%s.%N > t/JOB.end"
    t0 = time.monotonic()
    p = run_backend(RUN_LOCAL, ["--max_jobs_run", "2", "JOB=1:6", "log/c.JOB.log", cmd], tmp_path, os.environ)
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    spans = [(float((tmp_path / f"t/{i}.start").read_text()), float((tmp_path / f"t/{i}.end").read_text()))
             for i in range(1, 7)]
    assert max_overlap(spans) == 2  # bounded by 2, and 2 really ran side by side
    assert wall >= 0.9  # 6 tasks of 0.3 s, 2 at a time: at least 3 rounds


def test_time_limit_kills_the_task_and_its_children(tmp_path):
    t0 = time.monotonic()
    p = run_backend(RUN_LOCAL, ["--time", "0:01", "log/slow.log", "sleep 30 & echo $! > child.pid; wait"],
                    tmp_path, os.environ)
    assert time.monotonic() - t0 < 15
    assert p.returncode == 1
    assert "1 / 1 failed, log is in log/slow.log" in p.stderr
    lines = log_lines(tmp_path / "log/slow.log")
    assert "# Killed: time limit of 1 s exceeded" in lines
    assert lines[-1].startswith("# Ended (code 124) at ")
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_unknown_option_errors_before_running_anything(tmp_path):
    p = run_backend(RUN_LOCAL, ["--bogus", "1", "JOB=1:2", "log/u.JOB.log", "touch ran.JOB"], tmp_path, os.environ)
    assert p.returncode == 2
    assert "unknown option '--bogus'" in p.stderr and "Usage: utils/run_local.py" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_calls_are_refused_with_the_reason(tmp_path):
    cases = [
        (["JOB=1:3", "log/one.log", "true"], "3 tasks would share one log file 'log/one.log'"),
        (["JOB=5:3", "log/x.JOB.log", "true"], "empty job range 'JOB=5:3'"),
        (["--max_jobs_run", "0", "JOB=1:2", "log/x.JOB.log", "true"], "--max_jobs_run must be >= 1"),
        (["--time", "ten", "log/x.log", "true"], "--time 'ten' is not a Slurm time"),
        (["--num_threads"], "option '--num_threads' needs a value"),
        (["JOB=1:2", "log/x.JOB.log"], "expected a log file and a command"),
    ]
    for args, message in cases:
        p = run_backend(RUN_LOCAL, args, tmp_path, os.environ)
        assert p.returncode == 2, args
        assert message in p.stderr, (args, p.stderr)
    assert list(tmp_path.iterdir()) == []


def test_num_threads_and_dashed_option_spelling(tmp_path):
    p = run_backend(RUN_LOCAL, ["--num-threads=3", "--mem", "2G", "--config", "conf/none.conf", "log/n.log",
                                "echo threads=$OMP_NUM_THREADS,$MKL_NUM_THREADS"], tmp_path, os.environ)
    assert p.returncode == 0, p.stderr
    lines = log_lines(tmp_path / "log/n.log")
    assert "threads=3,3" in lines
    assert lines[-2].endswith(" threads=3")


def test_gpu_request_is_recorded_and_warned_without_nvidia_smi(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    p = run_backend(RUN_LOCAL, ["--gpu", "1", "log/g.log", "true"], tmp_path, env)
    assert p.returncode == 0
    assert "nvidia-smi is not on PATH" in p.stderr
    assert log_lines(tmp_path / "log/g.log")[2] == "# gpu=1 requested (local backend: CUDA_VISIBLE_DEVICES=(unset))"


def test_sigterm_kills_running_tasks_and_exits_nonzero(tmp_path):
    proc = subprocess.Popen([*RUN_LOCAL, "JOB=1:2", "log/s.JOB.log", "echo $$ > pid.JOB; sleep 60"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not all((tmp_path / f"pid.{i}").is_file() and (tmp_path / f"pid.{i}").read_text() for i in (1, 2)):
        assert time.monotonic() < deadline, "tasks did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by signal 15" in err
    for i, pid in zip((1, 2), pids):
        assert not Path(f"/proc/{pid}").exists()
        assert log_lines(tmp_path / f"log/s.{i}.log")[-1].startswith("# Ended (code 143) at ")


def test_progress_lines_while_tasks_run(tmp_path):
    env = dict(os.environ, UALM_JOBS_PROGRESS_S="0")  # default: at most one line a minute
    p = run_backend(RUN_LOCAL, ["--max_jobs_run", "1", "JOB=1:2", "log/p.JOB.log", "sleep 0.5"], tmp_path, env)
    assert p.returncode == 0, p.stderr
    assert "run_local.py: 2 task(s) of log/p.JOB.log: 0 done (0 failed), 1 running, 1 waiting" in p.stderr
    assert "1 done (0 failed), 1 running, 0 waiting" in p.stderr
