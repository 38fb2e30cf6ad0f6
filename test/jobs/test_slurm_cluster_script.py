"""tools/slurm_cluster.sh: start, status and stop of a real single-node cluster (a second one, beside the
session's), and its refusal of bad calls."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from jobs_testlib import REPO, require_slurm

SCRIPT = str(REPO / "tools" / "slurm_cluster.sh")


def cluster(action, directory, **env):
    return subprocess.run([SCRIPT, action, directory], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


def test_bad_calls_are_refused(tmp_path):
    p = subprocess.run([SCRIPT, "start"], capture_output=True, text=True)
    assert p.returncode == 1 and "expected 2 arguments" in p.stderr and "Usage: tools/slurm_cluster.sh" in p.stderr
    p = subprocess.run([SCRIPT, "restart", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 1 and "unknown action 'restart'" in p.stderr
    p = subprocess.run([SCRIPT, "status", str(tmp_path / "none")], capture_output=True, text=True)
    assert p.returncode == 1 and f"no cluster directory {tmp_path / 'none'}" in p.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slurm
def test_start_status_stop_lifecycle():
    require_slurm()
    d = tempfile.mkdtemp(prefix="ualm_slurm_life_")
    try:
        p = cluster("start", d)
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"export SLURM_CONF={d}/slurm.conf\n"
        conf = Path(d, "slurm.conf").read_text()
        assert f"NodeName={socket.gethostname().split('.')[0]} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} " in conf
        assert "SelectTypeParameters=CR_Core_Memory" in conf and "DefMemPerCPU=1024" in conf
        assert Path(d, "nvidia0").is_char_device() and Path(d, "nvidia1").is_char_device()
        assert "AutoDetect=off" in Path(d, "gres.conf").read_text()
        again = cluster("start", d)
        assert again.returncode == 0 and "already running" in again.stderr
        assert cluster("status", d).returncode == 0

        env = dict(os.environ, SLURM_CONF=f"{d}/slurm.conf")
        sub = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", f"echo $$ > {d}/job.pid; sleep 300"],
                             env=env, capture_output=True, text=True, cwd=d)
        assert sub.returncode == 0, sub.stderr
        deadline = time.monotonic() + 20
        while not (Path(d, "job.pid").exists() and Path(d, "job.pid").read_text().strip()):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        job_pid = int(Path(d, "job.pid").read_text())
        daemons = [int(Path(d, "run", f).read_text()) for f in ("slurmctld.pid", "slurmd.pid")]

        p = cluster("stop", d, SLURM_CLUSTER_DRAIN_S="1")
        assert p.returncode == 0, p.stderr
        assert "cancelling jobs" in p.stderr and "stopped" in p.stderr
        time.sleep(0.3)
        for pid in [job_pid, *daemons]:
            assert not Path(f"/proc/{pid}").exists(), f"pid {pid} survived stop"
        assert cluster("status", d).returncode == 1
    finally:
        cluster("stop", d, SLURM_CLUSTER_DRAIN_S="0")
        shutil.rmtree(d, ignore_errors=True)
