"""The mini recipe's LM configs (egs2/mini_ualm/ualm1/conf/train_ualm.yaml and the quick profile's
conf/quick/train_ualm.yaml): they pass the config checker, and their learning-rate schedules are the ones their
comments state, stepped through ESPnet's own scheduler for the whole run."""
import numpy as np
import torch
from espnet2.schedulers.warmup_lr import WarmupLR
from espnet2.tasks.abs_task import scheduler_classes

from ualm_tk.tasks import dry_run
from ualm_tk.tokens.layout import TokenLayout

CONFIG = "egs2/mini_ualm/ualm1/conf/train_ualm.yaml"
QUICK_CONFIG = "egs2/mini_ualm/ualm1/conf/quick/train_ualm.yaml"


def _lrs(sched_cls, conf, lr, steps):
    """Learning rate of optimiser steps 1..steps as ESPnet's trainer sees it (scheduler stepped after each)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = sched_cls(opt, **conf)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def _checked_schedule(config, tmp_path):
    """The config's task args (config checker passed) and the learning rate of each optimiser step of its run."""
    TokenLayout([f"w{i}" for i in range(90)], 8, 1024).write(tmp_path / "tokens")
    args = dry_run.parse_task_args(dry_run.load_config(str(config)), str(tmp_path / "tokens"))
    dry_run.check_args(args)  # registry names and every *_conf key
    steps = args.max_epoch * args.num_iters_per_epoch // args.accum_grad  # optimiser steps of the whole run
    return steps, _lrs(scheduler_classes[args.scheduler], args.scheduler_conf, args.optim_conf["lr"], steps), args


def test_mini_lm_config_checks_and_decays_to_zero_on_its_last_step(repo_root, tmp_path):
    steps, lr, args = _checked_schedule(repo_root / CONFIG, tmp_path)
    # until epoch 16 (step 1,600): ESPnet's warmuplr with 200 warm-up steps, what sessions 9-19 trained with
    ref = _lrs(WarmupLR, {"warmup_steps": 200}, args.optim_conf["lr"], 1600)
    np.testing.assert_allclose(lr[:1600], ref, rtol=4e-3)
    assert abs(lr.max() - 1.5e-3) < 1e-9 and lr.argmax() == 199
    # then linear to 0 on the run's last step; a max_epoch without its knot moved would fail here
    np.testing.assert_allclose(lr[1599:], np.linspace(5.3e-4, 0.0, steps - 1599), atol=2e-7)
    assert lr[-1] < 1e-9 < lr[-2]


def test_quick_lm_config_checks_and_decays_to_zero_on_its_last_step(repo_root, tmp_path):
    steps, lr, _ = _checked_schedule(repo_root / QUICK_CONFIG, tmp_path)
    assert steps == 100 and abs(lr.max() - 1.5e-3) < 1e-9 and lr.argmax() == 19
    assert lr[-1] < 1e-9 < lr[-2]  # past the last knot the scheduler would jump back up
