"""The recipe template's command line: options are declared once, checked before any work."""
import subprocess
from pathlib import Path

import pytest


@pytest.fixture()
def new_recipe(repo_root, tmp_path, subprocess_env):
    """A recipe made by setup.sh, with a local/data.sh that records that it ran."""
    target = tmp_path / "egs2" / "toy" / "ualm1"
    r = subprocess.run(
        [str(repo_root / "egs2/TEMPLATE/ualm1/setup.sh"), str(target)],
        capture_output=True, text=True, env=subprocess_env,
    )
    assert r.returncode == 0, r.stderr
    data_sh = target / "local" / "data.sh"
    data_sh.write_text("#!/usr/bin/env bash\ntouch ran_data_sh\nexit 3\n")
    data_sh.chmod(0o755)
    return target


def _run(recipe: Path, env, *args):
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, env=env)


def test_setup_sh_makes_a_recipe_and_refuses_to_overwrite(repo_root, new_recipe, subprocess_env):
    for name in ("ualm.sh", "path.sh", "utils"):
        assert (new_recipe / name).is_symlink() and (new_recipe / name).exists(), name
    for name in ("cmd.sh", "run.sh", "conf/slurm.conf"):
        assert (new_recipe / name).is_file() and not (new_recipe / name).is_symlink(), name
    r = subprocess.run(
        [str(repo_root / "egs2/TEMPLATE/ualm1/setup.sh"), str(new_recipe)],
        capture_output=True, text=True, env=subprocess_env,
    )
    assert r.returncode != 0 and "already exists" in r.stderr


def test_help_lists_every_option_with_default_and_comment(new_recipe, subprocess_env):
    r = _run(new_recipe, subprocess_env, "--help")
    assert r.returncode == 0, r.stderr
    for opt, default in [("--stage", "[1]"), ("--nj", "[2]"), ("--fs", "[16000]"), ("--force", "[false]"),
                         ("--min-dur", "[0.5]"), ("--local-data-opts", "[]")]:
        line = next((ln for ln in r.stdout.splitlines() if ln.split()[:1] == [opt]), None)
        assert line is not None, f"{opt} missing from --help:\n{r.stdout}"
        assert line.rstrip().endswith(default), line
        assert len(line.split()) > 2, f"{opt} has no comment: {line}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus", "1"], "unknown option --bogus"),
        (["--nj", "two"], "--nj expects an integer, got 'two'"),
        (["--min_dur", "short"], "--min_dur expects a number"),
        (["--force", "yes"], "--force expects true or false"),
        (["--stage", "9"], "stages are numbered 1..8"),
        (["--stage", "2", "--stop_stage", "1"], "--stage 2 is after --stop_stage 1"),
        (["--stop_stage", "4", "--num_result_samples", "0"], "--num_result_samples must be >= 1"),
        (["--audio_channels", "surround"], "--audio_channels must be mono or keep"),
        (["--nj"], "option --nj needs a value"),
        (["stray"], "unexpected arguments: stray"),
    ],
)
def test_bad_options_fail_before_any_work(new_recipe, subprocess_env, args, message):
    r = _run(new_recipe, subprocess_env, *args)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert not (new_recipe / "ran_data_sh").exists()
    assert not (new_recipe / "data").exists()


def test_equals_form_and_dashes_are_accepted(new_recipe, subprocess_env):
    r = _run(new_recipe, subprocess_env, "--stop-stage=1", "--nj=1")
    # the toy data.sh exits 3: the stage must fail and show that job's log
    assert r.returncode != 0
    assert (new_recipe / "ran_data_sh").exists()
    assert "failing job log: data/log/data.log" in r.stderr
    assert "# Ended (code 3)" in r.stderr
