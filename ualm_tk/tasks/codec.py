"""Codec training task (stage 3): ESPnet's GAN codec task with ``mini_rvq`` added.

Registry (YAML ``codec: <name>`` + ``codec_conf:``):

| name | training class | exported as (``ualm_tk.codec`` registry) |
|---|---|---|
| ``mini_rvq`` | :class:`ualm_tk.codec.mini_rvq_gan.MiniRVQGANCodec` | ``mini_rvq`` (its generator) |
| ``soundstream`` / ``encodec`` / ``dac`` / ``funcodec`` | espnet2.gan_codec classes | ``espnet_gan`` |

Training uses ESPnet's ``GANTrainer`` (progress logs, ``images/*.png`` loss curves per epoch,
``checkpoint.pth`` for ``--resume true``). A codec without a discriminator (``mini_rvq`` with
``adversarial: false``) gets a single optimizer; its config sets ``skip_discriminator_prob: 1.0``.
:func:`export_codec` turns the experiment directory into a component directory for
:func:`ualm_tk.codec.load_codec`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

import torch
import yaml
from espnet2.gan_codec.espnet_model import ESPnetGANCodecModel
from espnet2.tasks.abs_task import optim_classes
from espnet2.tasks.gan_codec import GANCodecTask
from espnet2.train.class_choices import ClassChoices
from typeguard import typechecked

from ualm_tk.codec import ESPnetGANCodec, save_codec
from ualm_tk.codec.espnet_gan import ESPNET_MODELS, espnet_models
from ualm_tk.codec.mini_rvq_gan import MiniRVQGANCodec

logger = logging.getLogger(__name__)

codec_train_choices = ClassChoices(
    "codec",
    classes=dict(mini_rvq=MiniRVQGANCodec, **espnet_models()),
    default="mini_rvq",
)


class SegmentCropper:
    """Preprocess wrapper: crop (or zero-pad) ``audio [L]`` to ``segment_length`` samples.

    Training crops at a random offset (numpy's global RNG, seeded by ESPnet); validation takes
    the first segment, so validation losses compare across epochs.
    """

    def __init__(self, inner: Optional[Callable], segment_length: int, train: bool):
        self.inner = inner
        self.segment_length = segment_length
        self.train = train

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.inner is not None:
            data = self.inner(uid, data)
        x = data["audio"]
        if x.ndim != 1:
            raise ValueError(f"utterance '{uid}': codec training takes mono audio, got shape {x.shape}")
        n = self.segment_length
        if len(x) > n:
            start = np.random.randint(0, len(x) - n + 1) if self.train else 0
            x = x[start:start + n]
        elif len(x) < n:
            x = np.pad(x, (0, n - len(x)))
        data["audio"] = x
        return data


class CodecTask(GANCodecTask):
    """``GANCodecTask`` whose ``codec`` choices include ``mini_rvq``; fixed-length segments.

    ``--segment_length N`` (samples, 0 = whole utterances) crops every utterance to one segment
    so that batches need no padding; use it with ``batch_type: unsorted`` (ESPnet 202511's
    chunk iterator fails under numpy 2).
    """

    class_choices_list = [codec_train_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        parser.add_argument("--segment_length", type=int, default=16000,
                            help="crop utterances to this many samples (0: no cropping)")

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        inner = super().build_preprocess_fn(args, train)
        if args.segment_length > 0:
            return SegmentCropper(inner, args.segment_length, train)
        return inner

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetGANCodecModel:
        codec_class = codec_train_choices.get_class(args.codec)
        codec = codec_class(**args.codec_conf)
        return ESPnetGANCodecModel(codec=codec, **args.model_conf)

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: ESPnetGANCodecModel) -> List[torch.optim.Optimizer]:
        if getattr(model.codec, "discriminator", None) is not None:
            return super().build_optimizers(args, model)
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"must be one of {list(optim_classes)}: {args.optim}")
        logger.info("codec has no discriminator: one optimizer (%s) for the generator", args.optim)
        return [optim_class(model.codec.generator.parameters(), **args.optim_conf)]


def _pick_checkpoint(exp_dir: Path, config: Dict[str, Any]) -> Path:
    for phase, key, _mode in config.get("best_model_criterion") or []:
        p = exp_dir / f"{phase}.{key}.best.pth"
        if p.exists():
            return p
    p = exp_dir / "latest.pth"
    if p.exists():
        return p
    raise FileNotFoundError(f"{exp_dir}: no trained model (neither *.best.pth nor latest.pth)")


def export_codec(
    exp_dir: Union[str, Path],
    out_dir: Optional[Union[str, Path]] = None,
    checkpoint: Optional[Union[str, Path]] = None,
) -> Path:
    """Write the codec trained in ``exp_dir`` (ESPnet output dir) as a component directory.

    ``out_dir`` defaults to ``exp_dir/codec``; ``checkpoint`` to the best model of the first
    ``best_model_criterion`` (else ``latest.pth``).
    """
    exp_dir = Path(exp_dir)
    cfg_path = exp_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing; {exp_dir} is not a codec training directory")
    with open(cfg_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    ckpt = Path(checkpoint) if checkpoint else _pick_checkpoint(exp_dir, config)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    name, conf = config["codec"], config.get("codec_conf") or {}
    codec_state = {k[len("codec."):]: v for k, v in state.items() if k.startswith("codec.")}
    if name == "mini_rvq":
        wrapper = MiniRVQGANCodec(**conf)
        wrapper.load_state_dict(codec_state)
        codec = wrapper.generator
    elif name in ESPNET_MODELS:
        codec = ESPnetGANCodec(model=name, model_conf=conf)
        codec.model.load_state_dict(codec_state)
    else:
        raise ValueError(f"{cfg_path}: codec '{name}' cannot be exported (known: mini_rvq, {', '.join(ESPNET_MODELS)})")
    out = Path(out_dir) if out_dir else exp_dir / "codec"
    meta = dict(trained_in=str(exp_dir.resolve()), checkpoint=ckpt.name, train_codec=name)
    save_codec(codec.eval(), out, meta)
    logger.info("exported %s (%s) from %s to %s", name, ckpt.name, exp_dir, out)
    return out


def main(cmd=None):
    """``python -m ualm_tk.tasks.codec <espnet training args>`` (ESPnet's AbsTask main)."""
    CodecTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
