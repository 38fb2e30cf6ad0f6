"""The mini recipe's quick profile (egs2/mini_ualm/ualm1/run_quick.sh, conf/quick/): the same models as run.sh,
trained for fewer steps, with options ualm.sh knows (its LM schedule: test_mini_lm_config.py)."""
import subprocess

import pytest
import yaml

RECIPE = "egs2/mini_ualm/ualm1"
# quick config -> (the full recipe's config, the keys the quick one may change)
PAIRS = {
    "conf/quick/codec.yaml": ("conf/codec/mini_rvq.yaml", {"max_epoch"}),
    "conf/quick/vae.yaml": ("conf/vae/mini.yaml", {"max_epoch"}),
    "conf/quick/audio_encoder_pretrain.yaml": ("conf/audio_encoder_pretrain.yaml", {"max_epochs"}),
    "conf/quick/train_ualm.yaml": ("conf/train_ualm.yaml", {"max_epoch", "num_iters_per_epoch", "scheduler_conf"}),
}


@pytest.mark.parametrize("quick", sorted(PAIRS))
def test_quick_config_is_the_full_one_with_fewer_steps(repo_root, quick):
    full, changed = PAIRS[quick]
    q = yaml.safe_load((repo_root / RECIPE / quick).read_text())
    f = yaml.safe_load((repo_root / RECIPE / full).read_text())
    assert set(q) == set(f), f"{quick}: keys differ from {full}: {sorted(set(q) ^ set(f))}"
    for key in set(f) - changed:
        assert q[key] == f[key], f"{quick}: {key} is {q[key]!r}, {full} has {f[key]!r}"
    for key in changed:
        if isinstance(f[key], int):
            assert 0 < q[key] < f[key], f"{quick}: {key} {q[key]} is not fewer than {full}'s {f[key]}"


def test_run_quick_passes_only_options_ualm_sh_knows(repo_root, subprocess_env):
    """Every option run_quick.sh (and the run.sh it calls) sets is parsed by ualm.sh, which then stops at the first
    check of the stage range: no work is done."""
    r = subprocess.run(["./run_quick.sh", "--stage", "8", "--stop_stage", "1"], cwd=repo_root / RECIPE,
                       capture_output=True, text=True, env=subprocess_env)
    assert r.returncode != 0
    assert "--stage 8 is after --stop_stage 1" in r.stderr, r.stderr[-2000:]
