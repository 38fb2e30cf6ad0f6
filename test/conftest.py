"""Shared fixtures for the ualm_tk test suite."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = REPO_ROOT
sys.path.insert(0, str(REPO_ROOT / "test" / "jobs"))
from jobs_testlib import require_slurm  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def python_exe() -> str:
    """The interpreter of the project's venv (the one running the tests)."""
    return sys.executable


@pytest.fixture()
def subprocess_env():
    """Environment for subprocesses: the venv's bin first on PATH, repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node cluster started by tools/slurm_cluster.sh in a temp dir; yields its SLURM_CONF."""
    require_slurm()
    cluster_dir = tempfile.mkdtemp(prefix="ualm_slurm_")
    script = str(REPO / "tools" / "slurm_cluster.sh")

    def stop():
        env = dict(os.environ, SLURM_CLUSTER_DRAIN_S="10")
        subprocess.run([script, "stop", cluster_dir], capture_output=True, text=True, timeout=120, env=env)
        shutil.rmtree(cluster_dir, ignore_errors=True)

    try:
        p = subprocess.run([script, "start", cluster_dir], capture_output=True, text=True, timeout=120)
    except BaseException:
        stop()
        raise
    if p.returncode != 0:
        stop()
        pytest.fail(f"tools/slurm_cluster.sh start failed ({p.returncode}):\n{p.stderr}")
    exports = [line for line in p.stdout.splitlines() if line.startswith("export SLURM_CONF=")]
    assert exports, f"no 'export SLURM_CONF=' line in the output of start:\n{p.stdout}\n{p.stderr}"
    conf = exports[-1].split("=", 1)[1]
    assert Path(conf).is_file()
    try:
        yield conf
    finally:
        stop()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin contention on the shared 2 cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
