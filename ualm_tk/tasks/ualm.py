"""LM training task (stage 5): the UALM model through ESPnet's AbsTask and Trainer.

Registries (YAML ``<name>: <key>`` + ``<name>_conf:``):

| name | choices |
|---|---|
| ``decoder`` | ``transformer`` (ours), ``hf`` (local Hugging Face causal LM) — :mod:`ualm_tk.lm` |
| ``audio_encoder`` | ``mel_transformer``, ``whisper``, ``none`` — :mod:`ualm_tk.audio_encoder` |
| ``pattern`` | ``delay``, ``parallel`` — :mod:`ualm_tk.patterns` |
| ``model`` | ``ualm`` — :mod:`ualm_tk.models` |

Data: ``--train_data_path_and_name_and_type dump/<task>/<set>/data.json,<task>,data_json`` once
per task (same for ``--valid_...``); ``--task_factors`` gives per-task up-sampling factors;
``--data_conf`` the CFG dropout (``cfg_drop``, default 0.05), ``sample_rate``, ``max_len``,
``audio_weight``. Batches come from :class:`ualm_tk.data.lm_dataset.LMIterFactory`
(``iterator_type: task``): length bucketing within ``--batch_bins`` positions and at most
``--batch_size`` rows. The token directory (``--token_dir``) is copied into
``<output_dir>/token_list`` so the experiment directory is a self-contained model directory
(``config.yaml`` + ``*.pth`` + ``token_list/``) for :mod:`ualm_tk.bin.generate`.

Run: ``python -m ualm_tk.tasks.ualm --config conf/train_ualm_tiny.yaml --token_dir ... --output_dir exp/...``;
``--resume true`` continues from ``checkpoint.pth`` (model, optimizer, scheduler, epoch; the data
stream is a pure function of seed and epoch, so it continues where it stopped).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from espnet2.tasks.abs_task import AbsTask, IteratorOptions
from espnet2.train.trainer import Trainer
from espnet2.utils.nested_dict_action import NestedDictAction
from typeguard import typechecked

from ualm_tk.audio_encoder import audio_encoder_choices, build_audio_encoder
from ualm_tk.data.lm_dataset import LMDataset, LMIterFactory, TaskSource, collate
from ualm_tk.lm import decoder_choices
from ualm_tk.models import AbsLMModel, model_choices
from ualm_tk.patterns import pattern_choices
from ualm_tk.tokens.layout import TokenLayout

logger = logging.getLogger(__name__)

DATA_CONF_DEFAULTS = dict(cfg_drop=0.05, cfg_scope="condition", sample_rate=16000, max_len=None, audio_weight=None)
TOKEN_DIR_NAME = "token_list"


def data_conf(args: argparse.Namespace) -> Dict:
    conf = dict(DATA_CONF_DEFAULTS)
    unknown = set(args.data_conf or {}) - set(conf)
    if unknown:
        raise ValueError(f"--data_conf: unknown key(s) {sorted(unknown)} (known: {sorted(conf)})")
    conf.update(args.data_conf or {})
    return conf


class UALMTask(AbsTask):
    """AbsTask for the UALM language model (see module doc)."""

    num_optimizers: int = 1
    class_choices_list = [decoder_choices, audio_encoder_choices, pattern_choices, model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument("--token_dir", type=str, default=None,
                           help="token directory (token_list, token_bias.json, text tokenizer) from stage 4")
        group.add_argument("--task_factors", action=NestedDictAction, default=dict(),
                           help="per-task up-sampling factors, e.g. {caption_to_audio: 2.0} (default 1)")
        group.add_argument("--data_conf", action=NestedDictAction, default=dict(DATA_CONF_DEFAULTS),
                           help=f"data options: {sorted(DATA_CONF_DEFAULTS)}")
        parser.set_defaults(iterator_type="task", required=["output_dir", "token_dir"])
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    # ------------------------------------------------------------------ data
    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return collate

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return None  # rendering happens in LMDataset

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_dataset(cls, args: argparse.Namespace, triples, train: bool) -> LMDataset:
        factors = {str(k): float(v) for k, v in (args.task_factors or {}).items()}
        sources = []
        for path, task, kind in triples:
            if kind != "data_json":
                raise ValueError(f"{path},{task},{kind}: the third field must be 'data_json' (ualm data.json)")
            sources.append(TaskSource(path=path, task=task, factor=factors.get(task, 1.0)))
        unused = set(factors) - {s.task for s in sources}
        if unused and train:  # the valid set may hold fewer tasks than the training set
            raise ValueError(f"--task_factors names task(s) {sorted(unused)} with no data given")
        conf = data_conf(args)
        max_len = conf["max_len"]
        if max_len is None and args.decoder == "transformer":
            max_len = int((args.decoder_conf or {}).get("max_positions", 4096))
        pattern = pattern_choices.get_class(args.pattern)(**(args.pattern_conf or {}))
        return LMDataset(
            sources, TokenLayout.load(args.token_dir), pattern, pattern_name=args.pattern, train=train,
            cfg_drop=conf["cfg_drop"] if train else 0.0, cfg_scope=conf["cfg_scope"], max_len=max_len,
            sample_rate=int(conf["sample_rate"]), audio_weight=conf["audio_weight"], seed=args.seed,
        )

    #: the iterator factory class over :meth:`build_dataset`'s dataset (the DPO task swaps it)
    iter_factory_class = LMIterFactory

    @classmethod
    def build_task_iter_factory(cls, args: argparse.Namespace, iter_options: IteratorOptions, mode: str):
        dataset = cls.build_dataset(args, iter_options.data_path_and_name_and_type, train=iter_options.train)
        rank, world = 0, 1
        if iter_options.distributed:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return cls.iter_factory_class(
            dataset, batch_bins=iter_options.batch_bins, max_batch_size=iter_options.batch_size, seed=args.seed,
            num_iters_per_epoch=iter_options.num_iters_per_epoch, shuffle=iter_options.train,
            rank=rank, world_size=world, num_workers=args.num_workers,
        )

    # ------------------------------------------------------------------ model
    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsLMModel:
        if not getattr(args, "token_dir", None):
            raise ValueError("--token_dir is required (the token directory written in stage 4)")
        layout = TokenLayout.load(args.token_dir)
        decoder = decoder_choices.get_class(args.decoder)(**(args.decoder_conf or {}))
        audio_encoder = build_audio_encoder(getattr(args, "audio_encoder", None), getattr(args, "audio_encoder_conf", None))
        pattern = pattern_choices.get_class(args.pattern)(**(args.pattern_conf or {}))
        model_class = model_choices.get_class(args.model)
        model = model_class(layout=layout, decoder=decoder, pattern=pattern, audio_encoder=audio_encoder,
                            **(args.model_conf or {}))
        out = getattr(args, "output_dir", None)
        if out and not getattr(args, "collect_stats", False):
            rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
                torch.distributed.get_rank() == 0
            dst = Path(out) / TOKEN_DIR_NAME
            if rank0 and Path(args.token_dir).resolve() != dst.resolve():
                dst.mkdir(parents=True, exist_ok=True)
                for f in Path(args.token_dir).iterdir():
                    (shutil.copytree(f, dst / f.name, dirs_exist_ok=True) if f.is_dir() else shutil.copy2(f, dst / f.name))
        logger.info("UALM model: %s, %d parameters", layout.describe(), sum(p.numel() for p in model.parameters()))
        return model


def main(cmd=None):
    """``python -m ualm_tk.tasks.ualm <espnet training args>`` (ESPnet's AbsTask main)."""
    UALMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
