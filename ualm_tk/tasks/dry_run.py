"""Check an LM training config without its real checkpoints (``python -m ualm_tk.bin.lm_config_check``).

1. :func:`load_config` reads the YAML and applies ``KEY.SUB=VALUE`` overrides (values parsed as YAML),
   e.g. ``decoder_conf.hf_model_dir=/tmp/tiny_qwen2`` to substitute a tiny stand-in checkpoint.
2. :func:`parse_task_args` parses it with :class:`~ualm_tk.tasks.ualm.UALMTask`'s own parser (ESPnet
   rejects unknown top-level keys), then :func:`check_args` resolves every registry name and rejects
   unknown keys of every ``<name>_conf`` / ``optim_conf`` / ``scheduler_conf`` / ``data_conf`` by the
   constructor's signature, and checks the distributed options against what is installed.
3. :func:`build_model` builds the model exactly as training does (``UALMTask.build_model``).
4. :func:`full_size_estimate` counts the parameters the model would have with the REAL checkpoints,
   from architecture-only ``config.json`` files (``--full_size decoder=...json``): the backbone and the
   encoder are instantiated on PyTorch's ``meta`` device (no memory), the UALM-owned parts (vocabulary
   embedding + head, per-stream output embeddings, adapter) follow from the token layout and the widths.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import yaml

logger = logging.getLogger(__name__)

# bytes per parameter that DDP keeps on every GPU: fp32 weight + fp32 grad + AdamW's two fp32 moments
DDP_BYTES_PER_TRAINABLE_PARAM = 16
DDP_BYTES_PER_FROZEN_PARAM = 4


class ConfigCheckError(ValueError):
    """A config problem, with the key and what is wrong."""


# ---------------------------------------------------------------------------------------------- config
def apply_override(conf: Dict[str, Any], override: str) -> None:
    """``a.b.c=VALUE`` -> ``conf['a']['b']['c'] = yaml.safe_load(VALUE)`` (intermediate dicts created)."""
    if "=" not in override:
        raise ConfigCheckError(f"--override {override!r}: expected KEY=VALUE (e.g. decoder_conf.hf_model_dir=/dir)")
    key, value = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigCheckError(f"--override {override!r}: empty key component in {key!r}")
    node = conf
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigCheckError(f"--override {override!r}: {'.'.join(parts[:i + 1])} is not a mapping")
        node = nxt
    node[parts[-1]] = yaml.safe_load(value)


def load_config(path: str, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigCheckError(f"{path}: no such config file")
    conf = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(conf, dict):
        raise ConfigCheckError(f"{path}: the top level must be a mapping of option: value")
    for o in overrides:
        apply_override(conf, o)
    return conf


def parse_task_args(conf: Dict[str, Any], token_dir: str) -> argparse.Namespace:
    """Parse ``conf`` with UALMTask's parser (the same defaults and top-level key check as training)."""
    from ualm_tk.tasks.ualm import UALMTask

    parser = UALMTask.get_parser()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(conf, f)
    try:
        args = parser.parse_args(["--config", f.name, "--token_dir", token_dir, "--output_dir", "unused"])
    finally:
        Path(f.name).unlink()
    args.output_dir = None  # a dry run writes nothing
    return args


def _init_keys(cls) -> Optional[set]:
    """Keyword names ``cls.__init__`` accepts, or None when it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _check_conf_keys(where: str, cls, conf: Optional[Dict[str, Any]], reserved: Sequence[str] = ()) -> None:
    known = _init_keys(cls)
    if known is None or not conf:
        return
    known -= set(reserved)
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ConfigCheckError(f"{where}: unknown key(s) {unknown} for {cls.__name__} (known: {sorted(known)})")


def check_args(args: argparse.Namespace) -> List[str]:
    """Registry names and every ``*_conf`` key; returns notes (warnings) for the report."""
    from espnet2.tasks.abs_task import optim_classes, scheduler_classes

    from ualm_tk.tasks.ualm import UALMTask, data_conf

    notes: List[str] = []
    for choices in UALMTask.class_choices_list:
        name = getattr(args, choices.name)
        try:
            cls = choices.get_class(name)
        except ValueError as e:
            raise ConfigCheckError(f"{choices.name}: {e}") from None
        if cls is None:
            continue
        reserved = ("layout", "decoder", "pattern", "audio_encoder") if choices.name == "model" else ()
        _check_conf_keys(f"{choices.name}_conf ({choices.name}: {name})", cls,
                         getattr(args, f"{choices.name}_conf", None), reserved)
    try:
        data_conf(args)
    except ValueError as e:
        raise ConfigCheckError(str(e)) from None
    optim = optim_classes.get(str(args.optim).lower())
    if optim is None:
        raise ConfigCheckError(f"optim: {args.optim!r} is not one of {sorted(optim_classes)}")
    _check_conf_keys(f"optim_conf (optim: {args.optim})", optim, args.optim_conf, ("params",))
    if args.scheduler is not None:
        sched = scheduler_classes.get(args.scheduler)
        if sched is None:
            raise ConfigCheckError(f"scheduler: {args.scheduler!r} is not one of {sorted(scheduler_classes)}")
        _check_conf_keys(f"scheduler_conf (scheduler: {args.scheduler})", sched, args.scheduler_conf,
                         ("optimizer", "last_epoch"))
    if args.sharded_ddp and importlib.util.find_spec("fairscale") is None:
        notes.append("sharded_ddp: true needs fairscale, which is not installed")
    if args.use_deepspeed:
        if not args.deepspeed_config or not Path(args.deepspeed_config).is_file():
            raise ConfigCheckError(f"use_deepspeed: true but deepspeed_config {args.deepspeed_config!r} is not a file")
        json.loads(Path(args.deepspeed_config).read_text())
        if importlib.util.find_spec("deepspeed") is None:
            notes.append("use_deepspeed: true needs the deepspeed package, which is not installed here")
    if args.iterator_type != "task":
        raise ConfigCheckError(f"iterator_type: {args.iterator_type!r}; the UALM task needs 'task'")
    return notes


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    from ualm_tk.tasks.ualm import UALMTask

    return UALMTask.build_model(args)


# ------------------------------------------------------------------------------------------- estimate
def count(module: Optional[torch.nn.Module], trainable_only: bool = False) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class SizeRow:
    component: str
    built: int
    full: Optional[int] = None
    frozen: bool = False


@dataclass
class SizeReport:
    rows: List[SizeRow] = field(default_factory=list)

    def total(self, attr: str) -> Optional[int]:
        vals = [getattr(r, attr) for r in self.rows]
        return None if any(v is None for v in vals) else sum(vals)

    def ddp_bytes(self, attr: str) -> Optional[int]:
        vals = [(getattr(r, attr), r.frozen) for r in self.rows]
        if any(v is None for v, _ in vals):
            return None
        return sum(v * (DDP_BYTES_PER_FROZEN_PARAM if fz else DDP_BYTES_PER_TRAINABLE_PARAM) for v, fz in vals)

    def table(self) -> str:
        def fmt(n):
            return "-" if n is None else f"{n:,}"

        w = max(len(r.component) + 9 for r in self.rows)
        lines = [f"{'component':<{w}} {'built (stand-ins)':>18} {'full size (estimate)':>21}"]
        for r in self.rows:
            lines.append(f"{r.component + (' [frozen]' if r.frozen else ''):<{w}} {fmt(r.built):>18} {fmt(r.full):>21}")
        lines.append(f"{'total':<{w}} {fmt(self.total('built')):>18} {fmt(self.total('full')):>21}")
        b = self.ddp_bytes("full")
        if b is not None:
            lines.append(f"DDP training state per GPU (fp32 weights+grads+AdamW moments, frozen: weights only): "
                         f"{b / 1e9:.1f} GB + activations")
        return "\n".join(lines)


def load_arch_config(path: str):
    """A Hugging Face config from a ``config.json`` file or a directory holding one (no weights read)."""
    from transformers import AutoConfig

    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigCheckError(f"--full_size: {path} is neither a config.json nor a directory with one")
    d = json.loads(p.read_text())
    if "model_type" not in d:
        raise ConfigCheckError(f"--full_size: {p} has no model_type")
    mt = d.pop("model_type")
    return AutoConfig.for_model(mt, **d)


def hf_backbone_size(cfg) -> Dict[str, int]:
    """Backbone parameters without the token embedding (the UALM model owns it), from a config on ``meta``."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg)
    body = m.get_decoder()
    emb = body.get_input_embeddings().weight.numel()
    return dict(backbone=count(body) - emb, hidden=int(cfg.get_text_config(decoder=True).hidden_size),
                text_vocab=int(cfg.get_text_config(decoder=True).vocab_size))


def whisper_encoder_size(cfg) -> Dict[str, int]:
    from transformers import WhisperModel

    with torch.device("meta"):
        m = WhisperModel(cfg)
    return dict(encoder=count(m.get_encoder()), width=int(cfg.d_model), hidden_layers=int(cfg.encoder_layers) + 1)


def adapter_size(input_size: int, output_size: int, num_layers: int, mix_layers: Optional[int] = None) -> int:
    from ualm_tk.audio_encoder import AudioAdapter

    with torch.device("meta"):
        return count(AudioAdapter(input_size, output_size, num_layers=num_layers, mix_layers=mix_layers))


def size_report(model, args: argparse.Namespace, full_size: Dict[str, str]) -> SizeReport:
    """Parameter counts of the built model, and of the full-size one where ``full_size`` gives configs.

    ``full_size``: ``{"decoder": config.json, "audio_encoder": config.json}`` (``hf`` / ``whisper`` only).
    A component without a config is already full size when it is ours (``transformer``, ``mel_transformer``).
    """
    unknown = set(full_size) - {"decoder", "audio_encoder"}
    if unknown:
        raise ConfigCheckError(f"--full_size: unknown component(s) {sorted(unknown)} (decoder, audio_encoder)")
    layout = model.layout
    rep = SizeReport()
    D = model.decoder.hidden_size
    text_vocab = layout.text_size
    if "decoder" in full_size:
        if args.decoder != "hf":
            raise ConfigCheckError(f"--full_size decoder=... applies to decoder 'hf', the config has {args.decoder!r}")
        hf = hf_backbone_size(load_arch_config(full_size["decoder"]))
        rep.rows.append(SizeRow(f"decoder ({args.decoder} backbone)", count(model.decoder), hf["backbone"]))
        D, text_vocab = hf["hidden"], hf["text_vocab"]
    else:
        full = count(model.decoder) if args.decoder != "hf" else None
        rep.rows.append(SizeRow(f"decoder ({args.decoder})", count(model.decoder), full))
    enc_width, enc_layers = None, None
    if model.audio_encoder is not None:
        frozen = count(model.audio_encoder, trainable_only=True) == 0
        name = f"audio_encoder ({args.audio_encoder})"
        if "audio_encoder" in full_size:
            if args.audio_encoder != "whisper":
                raise ConfigCheckError(f"--full_size audio_encoder=... applies to 'whisper', not {args.audio_encoder!r}")
            w = whisper_encoder_size(load_arch_config(full_size["audio_encoder"]))
            rep.rows.append(SizeRow(name, count(model.audio_encoder), w["encoder"], frozen))
            enc_width, enc_layers = w["width"], w["hidden_layers"]
        else:
            full = count(model.audio_encoder) if args.audio_encoder != "whisper" else None
            rep.rows.append(SizeRow(name, count(model.audio_encoder), full, frozen))
            enc_width = model.audio_encoder.output_size if full is not None else None
            enc_layers = model.audio_encoder.num_hidden_layers
    elif "audio_encoder" in full_size:
        raise ConfigCheckError("--full_size audio_encoder=... but the config has no audio_encoder")
    # UALM-owned parts: [specials | text | K x N audio] x D for the embedding and the head, (K-1) x D stream embeddings
    V_full = layout.text_start + text_vocab + layout.num_codebooks * layout.codebook_size
    own_built = count(model.embed) + count(model.head) + model.stream_embed.numel()
    own_full = 2 * V_full * D + (layout.num_codebooks - 1) * D
    rep.rows.append(SizeRow(f"vocabulary embed+head+stream (V={layout.vocab_size:,}->{V_full:,})", own_built, own_full))
    if model.adapter is not None:
        layers = int((args.model_conf or {}).get("adapter_layers", 1))
        mix = enc_layers if model.adapter.mix_layers else None
        full = adapter_size(enc_width, D, layers, mix) if enc_width is not None else None
        rep.rows.append(SizeRow("adapter", count(model.adapter), full))
    return rep
