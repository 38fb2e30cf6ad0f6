"""ESPnet task that trains an enhancement VAE with ESPnet's GAN trainer.

Plug-in point (top of file): ``vae`` (:data:`ualm_tk.vae.vae_choices`), selected in YAML as
``vae: residual_vae`` + ``vae_conf: {...}``; ``model_conf`` configures the losses and the
discriminator (:class:`ualm_tk.vae.espnet_model.ESPnetVAEModel`).

Data: two scp files of the same keys::

    --train_data_path_and_name_and_type dump/vae/train/wav_lo.scp,wav_lo,sound   (16 kHz codec output)
    --train_data_path_and_name_and_type dump/audio/train/master.scp,wav_hi,sound (48 kHz master)

Run through :mod:`ualm_tk.bin.vae_train`. Every pair is cut to one fixed-length segment, so
``batch_type: unsorted`` is used and the shape file only supplies the keys: pass the wav_lo scp
itself as ``--train_shape_file`` (or run ``--collect_stats true`` first, as any ESPnet task).
``--resume true`` continues from ``<output_dir>/checkpoint.pth``.
"""

from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask, optim_classes
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.gan_trainer import GANTrainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import float_or_none, str2bool
from typeguard import typechecked

from ualm_tk.vae import vae_choices
from ualm_tk.vae.espnet_model import ESPnetVAEModel
from ualm_tk.vae.pairs import VAEPairPreprocessor

# plug-in registry of this task: --vae <name> --vae_conf <dict>
class_choices_list = [vae_choices]


def _vae_conf_with_defaults(args: argparse.Namespace) -> dict:
    conf = get_default_kwargs(vae_choices.get_class(args.vae))
    conf.update(args.vae_conf or {})
    return conf


class VAETask(AbsTask):
    """Enhancement VAE (generator) + discriminator, two optimizers, GAN trainer."""

    num_optimizers: int = 2
    class_choices_list = class_choices_list
    trainer = GANTrainer

    @classmethod
    @typechecked
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(ESPnetVAEModel),
            help="Keyword arguments of ESPnetVAEModel (losses, discriminator).",
        )
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument(
            "--use_preprocessor", type=str2bool, default=True,
            help="Check, align and crop the (wav_lo, wav_hi) pairs.",
        )
        group.add_argument(
            "--segment_seconds", type=float_or_none, default=1.0,
            help="Length of the aligned segment cut from every pair (random in training, "
            "the start in validation); none = whole clips.",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=0)

    @classmethod
    @typechecked
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        conf = _vae_conf_with_defaults(args)
        strides = conf.get("encoder_strides") or [1]
        return VAEPairPreprocessor(
            train=train,
            input_sample_rate=int(conf["input_sample_rate"]),
            output_sample_rate=int(conf["output_sample_rate"]),
            channels=int(conf["channels"]),
            segment_seconds=args.segment_seconds,
            hop=int(np.prod(strides)),
            seed=args.seed if train else 0,
        )

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("wav_lo",) if inference else ("wav_lo", "wav_hi")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetVAEModel:
        vae = vae_choices.get_class(args.vae)(**(args.vae_conf or {}))
        return ESPnetVAEModel(vae=vae, **(args.model_conf or {}))

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: ESPnetVAEModel) -> List[torch.optim.Optimizer]:
        optimizers = []
        for name, conf, params in (
            (args.optim, args.optim_conf, model.vae.parameters()),
            (args.optim2, args.optim2_conf, model.discriminator.parameters()),
        ):
            optim_class = optim_classes.get(name)
            if optim_class is None:
                raise ValueError(f"optimizer must be one of {list(optim_classes)}: {name}")
            optimizers.append(optim_class(params, **conf))
        return optimizers
