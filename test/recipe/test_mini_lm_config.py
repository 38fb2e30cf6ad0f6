"""The mini recipe's LM config (egs2/mini_ualm/ualm1/conf/train_ualm.yaml): it passes the config checker, and its
learning-rate schedule is the one its comment states, stepped through ESPnet's own scheduler for the whole run."""
import numpy as np
import torch
from espnet2.schedulers.warmup_lr import WarmupLR
from espnet2.tasks.abs_task import scheduler_classes

from ualm_tk.tasks import dry_run
from ualm_tk.tokens.layout import TokenLayout

CONFIG = "egs2/mini_ualm/ualm1/conf/train_ualm.yaml"


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


def test_mini_lm_config_checks_and_decays_to_zero_on_its_last_step(repo_root, tmp_path):
    TokenLayout([f"w{i}" for i in range(90)], 8, 1024).write(tmp_path / "tokens")
    args = dry_run.parse_task_args(dry_run.load_config(str(repo_root / CONFIG)), str(tmp_path / "tokens"))
    dry_run.check_args(args)  # registry names and every *_conf key
    steps = args.max_epoch * args.num_iters_per_epoch // args.accum_grad  # optimiser steps of the whole run
    lr = _lrs(scheduler_classes[args.scheduler], args.scheduler_conf, args.optim_conf["lr"], steps)
    # until epoch 16 (step 1,600): ESPnet's warmuplr with 200 warm-up steps, what sessions 9-19 trained with
    ref = _lrs(WarmupLR, {"warmup_steps": 200}, args.optim_conf["lr"], 1600)
    np.testing.assert_allclose(lr[:1600], ref, rtol=4e-3)
    assert abs(lr.max() - 1.5e-3) < 1e-9 and lr.argmax() == 199
    # then linear to 0 on the run's last step; a max_epoch without its knot moved would fail here
    np.testing.assert_allclose(lr[1599:], np.linspace(5.3e-4, 0.0, steps - 1599), atol=2e-7)
    assert lr[-1] < 1e-9 < lr[-2]
