"""Helpers shared by the job-interface tests."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "utils"
TEMPLATE_SLURM_CONF = REPO / "egs2" / "TEMPLATE" / "ualm1" / "conf" / "slurm.conf"

if str(UTILS) not in sys.path:  # jobs_common and run_slurm are importable for unit tests
    sys.path.insert(0, str(UTILS))


def run_backend(prefix, args, cwd, env, timeout=120):
    return subprocess.run([*prefix, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def log_lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


SLURM_BINARIES = ("slurmctld", "slurmd", "slurmstepd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "munged")


def require_slurm():
    """Skip when Slurm is absent and we are not root (cannot install it); fail when root lacks it."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        if os.geteuid() != 0:
            pytest.skip(f"Slurm not installed ({', '.join(missing)} missing) and not root: "
                        "tools/install_system.sh (as root) installs slurm-wlm and munge")
        pytest.fail(f"running as root but Slurm is not installed ({', '.join(missing)} missing): "
                    "run tools/install_system.sh")
