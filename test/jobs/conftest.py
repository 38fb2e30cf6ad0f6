"""Fixtures for the job-interface tests: the backends' command prefixes (the cluster is in test/conftest.py)."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs_testlib import TEMPLATE_SLURM_CONF, UTILS  # noqa: E402


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def backend(request):
    """(name, command prefix, environment) for running a backend as a user would."""
    env = dict(os.environ)
    if request.param == "local":
        return "local", [str(UTILS / "run_local.py")], env
    env["SLURM_CONF"] = request.getfixturevalue("slurm_cluster")
    return "slurm", [str(UTILS / "run_slurm.py"), "--config", str(TEMPLATE_SLURM_CONF)], env

