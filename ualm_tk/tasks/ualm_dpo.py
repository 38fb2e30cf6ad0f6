"""DPO training task (stage 6): a stage-5 UALM model tuned on preference pairs through ESPnet's trainer.

Run::

    python -m ualm_tk.tasks.ualm_dpo --config conf/train_ualm_dpo.yaml --init_model_dir exp/ualm_tiny \\
        --train_data_path_and_name_and_type exp/ualm_dpo_tiny/pairs/train/pairs.json,dpo,dpo_pairs \\
        --valid_data_path_and_name_and_type exp/ualm_dpo_tiny/pairs/valid/pairs.json,dpo,dpo_pairs \\
        --output_dir exp/ualm_dpo_tiny

* The architecture (``decoder``, ``audio_encoder``, ``pattern``, ``model`` and their ``_conf``) is
  taken from ``<init_model_dir>/config.yaml`` (what the command line gives for them is replaced,
  with a log line); ``--token_dir`` defaults to ``<init_model_dir>/token_list`` and must match it.
* The model is :class:`ualm_tk.dpo.model.UALMDPOModel`: the policy starts from the init model's
  weights, the frozen reference is the init model itself. ``--dpo_conf`` sets ``beta`` (0.1),
  ``ce_weight`` (1.0, the CE regulariser on winners), ``dpo_weight`` (1.0) and ``uncond_ce_weight``
  (0.0; > 0 adds the CE of the winners' CFG unconditional forms, a third row per pair, so the
  unconditional branch that CFG uses at inference keeps training) and ``guidance_scale`` (null = DPO on
  the conditional log-probs; λ = DPO on the log-probs of the distribution CFG samples at λ, both
  sides' unconditional forms added as rows 3 and 4 of each pair: ``ualm_tk.dpo.model``) and
  ``length_normalize`` (false; true = DPO on per-token instead of summed log-probs, with a larger ``beta``).
* Data: pairs.json files of :mod:`ualm_tk.dpo.pairs` (third field ``dpo_pairs``), bucketed within
  ``--batch_bins`` positions (a pair counts ``R·max(S_chosen, S_rejected)`` with R its 2 to 4 rows), at most
  ``--batch_size`` pairs per batch.
* The output directory is a plain UALM model directory: ``config.yaml`` says ``model: ualm`` with
  the init model's architecture, the checkpoints hold the policy only (no reference keys), and
  ``token_list/`` is copied in, so ``ualm_tk.bin.generate --model_dir <output_dir>`` works on it.

The CE fine-tune on winners before DPO (the paper's guard against loss spikes) is either this task
with ``--dpo_conf "{dpo_weight: 0.0}"`` on the same pairs (then DPO starts from its output dir, which
becomes the reference, as in standard DPO where the reference is the fine-tuned model), or the
ordinary LM task (:mod:`ualm_tk.tasks.ualm`, ``--init_param <stage-5 .pth>``) on
``<pairs_dir>/chosen/data.json``, a caption_to_audio data.json of the winners.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict

import yaml
from espnet2.utils.nested_dict_action import NestedDictAction
from typeguard import typechecked

from ualm_tk.dpo.data import PairIterFactory, PairsDataset, uncond_sides
from ualm_tk.dpo.model import UALMDPOModel
from ualm_tk.models import AbsLMModel
from ualm_tk.patterns import pattern_choices
from ualm_tk.tasks.ualm import TOKEN_DIR_NAME, UALMTask, data_conf
from ualm_tk.tokens.layout import TokenLayout

logger = logging.getLogger(__name__)

DPO_CONF_DEFAULTS = dict(beta=0.1, ce_weight=1.0, dpo_weight=1.0, uncond_ce_weight=0.0, guidance_scale=None,
                         length_normalize=False)
BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}
ARCH_KEYS = ("decoder", "decoder_conf", "audio_encoder", "audio_encoder_conf", "pattern", "pattern_conf",
             "model", "model_conf")


def dpo_conf(args: argparse.Namespace) -> Dict:
    conf = dict(DPO_CONF_DEFAULTS)
    unknown = set(args.dpo_conf or {}) - set(conf)
    if unknown:
        raise ValueError(f"--dpo_conf: unknown key(s) {sorted(unknown)} (known: {sorted(conf)})")
    conf.update(args.dpo_conf or {})
    for key, value in conf.items():
        if value is None and key == "guidance_scale":
            continue  # plain (conditional) DPO
        if key == "length_normalize":
            word = str(value).lower()
            if not isinstance(value, (bool, int, str)) or word not in BOOL_WORDS:
                raise ValueError(f"--dpo_conf length_normalize: expected true or false, got {value!r}")
            conf[key] = BOOL_WORDS[word]
            continue
        try:
            conf[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"--dpo_conf {key}: expected a number, got {value!r}") from None
    return conf


def adopt_init_architecture(args: argparse.Namespace) -> None:
    """Copy the architecture keys of ``<init_model_dir>/config.yaml`` into ``args`` (module doc)."""
    init = Path(args.init_model_dir)
    cfg_path = init / "config.yaml"
    if not cfg_path.is_file() or not (init / TOKEN_DIR_NAME).is_dir():
        raise FileNotFoundError(f"--init_model_dir {init}: no config.yaml/{TOKEN_DIR_NAME}; give a stage-5 model dir")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    for k in ARCH_KEYS:
        if k not in cfg:
            raise ValueError(f"{cfg_path}: missing '{k}' (not a ualm_tk.tasks.ualm config)")
        if getattr(args, k, None) not in (None, cfg[k]) and k not in ("model", "model_conf"):
            logger.info("--%s %s replaced by the init model's %s", k, getattr(args, k), cfg[k])
        setattr(args, k, cfg[k])
    if cfg["model"] != "ualm":
        raise ValueError(f"{cfg_path}: model '{cfg['model']}'; DPO tunes a 'ualm' model")
    conf = dict(cfg["model_conf"] or {})
    if conf.pop("alignment_phase", False):
        logger.info("init model was trained in the alignment phase; DPO trains all parameters")
    args.model_conf = conf
    # stage 5's codec-stream loss weights also weight DPO's sequence log-probs and its CE on the winners,
    # unless the DPO config sets its own data_conf.audio_weight
    init_weight = (cfg.get("data_conf") or {}).get("audio_weight")
    data = dict(getattr(args, "data_conf", None) or {})
    if init_weight is not None and data.get("audio_weight") is None:
        data["audio_weight"] = init_weight
        args.data_conf = data
        logger.info("data_conf.audio_weight %s taken from %s", init_weight, cfg_path)
    own = TokenLayout.load(init / TOKEN_DIR_NAME)
    if not getattr(args, "token_dir", None):
        args.token_dir = str(init / TOKEN_DIR_NAME)
    elif TokenLayout.load(args.token_dir).sha256() != own.sha256():
        raise ValueError(f"--token_dir {args.token_dir} is not the token list of --init_model_dir {init}")


class UALMDPOTask(UALMTask):
    """AbsTask for DPO on top of :class:`UALMTask` (see module doc)."""

    iter_factory_class = PairIterFactory  # batches of B chosen rows followed by their B rejected rows

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="DPO related")
        group.add_argument("--init_model_dir", type=str, default=None,
                           help="stage-5 model dir (config.yaml, *.pth, token_list/): initial policy and reference")
        group.add_argument("--dpo_conf", action=NestedDictAction, default=dict(DPO_CONF_DEFAULTS),
                           help=f"DPO options: {sorted(DPO_CONF_DEFAULTS)}")
        parser.set_defaults(required=["output_dir", "init_model_dir"])

    @classmethod
    def build_dataset(cls, args: argparse.Namespace, triples, train: bool) -> PairsDataset:
        paths = []
        for path, _name, kind in triples:
            if kind != "dpo_pairs":
                raise ValueError(f"{path},{_name},{kind}: the third field must be 'dpo_pairs' (a DPO pairs.json)")
            paths.append(path)
        conf = data_conf(args)
        max_len = conf["max_len"]
        if max_len is None and args.decoder == "transformer":
            max_len = int((args.decoder_conf or {}).get("max_positions", 4096))
        pattern = pattern_choices.get_class(args.pattern)(**(args.pattern_conf or {}))
        dpo = dpo_conf(args)
        return PairsDataset(paths, TokenLayout.load(args.token_dir), pattern, pattern_name=args.pattern,
                            max_len=max_len, audio_weight=conf["audio_weight"],
                            uncond_sides=uncond_sides(dpo["guidance_scale"], dpo["uncond_ce_weight"]))

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsLMModel:
        from ualm_tk.models.generation import load_model_dir

        if not getattr(args, "init_model_dir", None):
            raise ValueError("--init_model_dir is required (the stage-5 model directory)")
        adopt_init_architecture(args)
        policy = UALMTask.build_model(args)  # copies the token dir into output_dir
        reference, _, _ = load_model_dir(args.init_model_dir)
        policy.load_state_dict(reference.state_dict())
        conf = dpo_conf(args)
        logger.info("DPO: policy and reference from %s, %s", args.init_model_dir,
                    ", ".join(f"{k} {v}" for k, v in conf.items()))
        return UALMDPOModel(policy, reference, **conf)


def main(cmd=None):
    """``python -m ualm_tk.tasks.ualm_dpo <espnet training args>`` (ESPnet's AbsTask main)."""
    UALMDPOTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
