"""Fixtures for the job-interface tests: the backends' command prefixes and a real local Slurm cluster."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs_testlib import REPO, TEMPLATE_SLURM_CONF, UTILS, require_slurm  # noqa: E402


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


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def backend(request):
    """(name, command prefix, environment) for running a backend as a user would."""
    env = dict(os.environ)
    if request.param == "local":
        return "local", [str(UTILS / "run_local.py")], env
    env["SLURM_CONF"] = request.getfixturevalue("slurm_cluster")
    return "slurm", [str(UTILS / "run_slurm.py"), "--config", str(TEMPLATE_SLURM_CONF)], env

