"""utils/run_slurm.py on a real local Slurm cluster: resources, lost tasks, cancellation, errors."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from jobs_testlib import TEMPLATE_SLURM_CONF, UTILS, log_lines, run_backend

RUN_SLURM = [str(UTILS / "run_slurm.py"), "--config", str(TEMPLATE_SLURM_CONF)]


@pytest.fixture()
def slurm_env(slurm_cluster):
    return dict(os.environ, SLURM_CONF=slurm_cluster)


@pytest.mark.slurm
def test_gpu_request_reaches_the_task_as_a_gres_allocation(slurm_env, tmp_path):
    cmd = 'echo "cvd=[$CUDA_VISIBLE_DEVICES]"; scontrol -o show job "$SLURM_JOB_ID"'
    p = run_backend(RUN_SLURM, ["--gpu", "1", "log/gpu.log", cmd], tmp_path, slurm_env)
    assert p.returncode == 0, p.stderr
    lines = log_lines(tmp_path / "log/gpu.log")
    cvd = [line for line in lines if line.startswith("cvd=")]
    assert cvd and re.fullmatch(r"cvd=\[\d+(,\d+)*\]", cvd[0]), lines
    assert re.match(r"^# CUDA_VISIBLE_DEVICES=\d+ ", lines[3]), lines[3]
    job = next(line for line in lines if line.startswith("JobId="))
    assert "Partition=gpu" in job and "gres:gpu:1" in job, job


@pytest.mark.slurm
def test_num_threads_reaches_the_task_as_cpus_per_task(slurm_env, tmp_path):
    cmd = "echo cpus=$SLURM_CPUS_PER_TASK omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS"
    # with --gpu 1 too: the config's later num_threads rule must beat the gpu rule's -c 1
    p = run_backend(RUN_SLURM, ["--num_threads", "2", "--gpu", "1", "JOB=1:1", "log/nt.JOB.log", cmd],
                    tmp_path, slurm_env)
    assert p.returncode == 0, p.stderr
    lines = log_lines(tmp_path / "log/nt.1.log")
    assert "cpus=2 omp=2 mkl=2" in lines
    assert lines[-2].endswith(" threads=2")


@pytest.mark.slurm
def test_max_jobs_run_throttles_the_array(slurm_env, tmp_path):
    (tmp_path / "t").mkdir()
    cmd = "date +%s.%N > t/JOB.start; sleep 0.5; date +%s.%N > t/JOB.end"
    p = run_backend(RUN_SLURM, ["--max_jobs_run", "1", "JOB=1:2", "log/m.JOB.log", cmd], tmp_path, slurm_env)
    assert p.returncode == 0, p.stderr
    assert "--array=1-2%1" in (tmp_path / "log/q/m.sh").read_text()
    spans = sorted((float((tmp_path / f"t/{i}.start").read_text()), float((tmp_path / f"t/{i}.end").read_text()))
                   for i in (1, 2))
    assert spans[0][1] <= spans[1][0], spans  # 2 CPUs free, yet never side by side


@pytest.mark.slurm
def test_task_killed_without_footer_is_a_failure_with_slurms_reason(slurm_env, tmp_path):
    # kill -9 of the task runner: no '# Ended' line is ever written (like a node crash or OOM kill)
    p = run_backend(RUN_SLURM, ["JOB=1:2", "log/k.JOB.log", "echo started-JOB; test JOB -eq 1 || kill -9 $PPID"],
                    tmp_path, slurm_env)
    assert p.returncode == 1
    assert "1 / 2 failed, log is in log/k.2.log" in p.stderr, p.stderr
    assert "failed tasks: 2 (no footer)" in p.stderr
    assert re.search(r"task 2: no '# Ended' line in log/k.2.log: it never ran or was killed; "
                     r"Slurm says JobState=FAILED", p.stderr), p.stderr
    assert "started-2" in log_lines(tmp_path / "log/k.2.log")


@pytest.mark.slurm
def test_sigterm_cancels_the_slurm_job(slurm_env, tmp_path):
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([*RUN_SLURM, "JOB=1:2", "log/c.JOB.log", "touch running.JOB; sleep 120"],
                                cwd=tmp_path, env=slurm_env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while not (tmp_path / "running.1").exists():
        assert time.monotonic() < deadline, "task 1 never started"
        time.sleep(0.2)
    job_id = re.search(r"submitted job (\d+)", err_path.read_text()).group(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert f"cancelled Slurm job {job_id}" in err_path.read_text()
    deadline = time.monotonic() + 20
    while True:
        q = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T"], env=slurm_env,
                           capture_output=True, text=True)
        states = set(q.stdout.split())
        if states and states <= {"CANCELLED"}:
            break
        assert time.monotonic() < deadline, f"job {job_id} still {states} 20 s after SIGTERM"
        time.sleep(0.5)


def test_missing_sbatch_is_a_clear_error(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path / "empty-bin"))
    p = subprocess.run([sys.executable, str(UTILS / "run_slurm.py"), "--config", str(TEMPLATE_SLURM_CONF),
                        "JOB=1:2", "log/x.JOB.log", "true"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 2
    assert "'sbatch'" in p.stderr and "not on PATH" in p.stderr and "run_local.py" in p.stderr
    assert not (tmp_path / "log").exists()


def test_option_without_config_rule_is_refused_before_submitting(tmp_path):
    p = run_backend(RUN_SLURM, ["--partition", "big", "JOB=1:2", "log/x.JOB.log", "true"], tmp_path, os.environ)
    assert p.returncode == 2
    assert f"option --partition has no rule in {TEMPLATE_SLURM_CONF}" in p.stderr
    assert not (tmp_path / "log").exists()


def test_missing_config_names_the_default_path(tmp_path):
    p = run_backend([str(UTILS / "run_slurm.py")], ["log/x.log", "true"], tmp_path, os.environ)
    assert p.returncode == 2
    assert "config file conf/slurm.conf not found" in p.stderr
