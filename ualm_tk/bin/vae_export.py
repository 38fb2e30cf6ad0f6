#!/usr/bin/env python3
"""Export a VAE trained by ``ualm_tk.bin.vae_train`` as a component directory for ``load_vae``.

    python -m ualm_tk.bin.vae_export --exp_dir exp/vae_mini --out_dir exp/vae_mini/vae \
        [--checkpoint exp/vae_mini/valid.mrstft_loss.best.pth]

Without ``--checkpoint``: the best checkpoint by the config's first ``best_model_criterion``,
else ``checkpoint.pth`` (the last epoch). Writes ``component.yaml`` + ``model.pth``.
"""
import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml

from ualm_tk.vae import build_vae, save_vae


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="output_dir of vae_train (holds config.yaml)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--checkpoint", default=None, help="a *.pth of the training run")
    return p


def pick_checkpoint(exp_dir: Path, config: dict) -> Path:
    for crit in config.get("best_model_criterion") or []:
        p = exp_dir / f"{crit[0]}.{crit[1]}.best.pth"
        if p.exists():
            return p
    p = exp_dir / "checkpoint.pth"
    if p.exists():
        return p
    raise FileNotFoundError(f"{exp_dir}: no *.best.pth and no checkpoint.pth (has training run?)")


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    exp = Path(args.exp_dir)
    cfg_path = exp / "config.yaml"
    if not cfg_path.is_file():
        sys.exit(f"{cfg_path}: missing; --exp_dir must be the output_dir of vae_train")
    with open(cfg_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    try:
        ckpt = Path(args.checkpoint) if args.checkpoint else pick_checkpoint(exp, config)
    except FileNotFoundError as e:
        sys.exit(str(e))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # checkpoint.pth holds model + optimizers + reporter
    vae_state = {k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")}
    if not vae_state:
        sys.exit(f"{ckpt}: no 'vae.*' weights (not a VAE training checkpoint)")
    name, conf = config["vae"], dict(config.get("vae_conf") or {})
    vae = build_vae(name, conf)
    vae.load_state_dict(vae_state)
    meta = dict(
        source_checkpoint=str(ckpt.absolute()),  # e.g. valid.mrstft_loss.best.pth
        source_checkpoint_file=str(ckpt.resolve()),  # the epoch file it links to
        train_config=str(cfg_path.resolve()),
    )
    out = save_vae(vae, args.out_dir, name, conf, meta)
    logging.info("exported %s (%s) -> %s", name, ckpt, out)


if __name__ == "__main__":
    main()
