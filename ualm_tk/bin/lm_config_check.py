"""Dry-run check of an LM training config, without the real checkpoints.

    python -m ualm_tk.bin.lm_config_check --config conf/tuning/train_ualm_qwen2.5_7b.yaml \\
        --token_dir TOKEN_DIR \\
        --override decoder_conf.hf_model_dir=TINY_QWEN2 --override audio_encoder_conf.model_dir=TINY_WHISPER \\
        --full_size decoder=conf/tuning/arch/qwen2.5-7b.json \\
        --full_size audio_encoder=conf/tuning/arch/whisper-large-v3.json

Parses the YAML with the training task's own parser (unknown top-level keys are rejected), resolves
every registry name, rejects unknown ``*_conf`` keys, builds the model exactly as training does (with
the local checkpoints replaced by the ``--override`` stand-ins), and prints a parameter table: the
built model and the full-size estimate from architecture-only ``config.json`` files. Exit status 0 when
the config is valid, 1 with one line naming the key when it is not (2 for ESPnet's own parser errors).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict, List, Optional

from ualm_tk.tasks import dry_run


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="LM training YAML (python -m ualm_tk.tasks.ualm --config)")
    p.add_argument("--token_dir", required=True, help="token directory (stage 4 output or a stand-in)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a (dotted) config key, VALUE parsed as YAML; repeatable")
    p.add_argument("--full_size", action="append", default=[], metavar="COMPONENT=CONFIG_JSON",
                   help="architecture config.json of the real checkpoint for decoder / audio_encoder; repeatable")
    p.add_argument("--no_build", action="store_true", help="only check keys and names, do not build the model")
    p.add_argument("--log_level", default="WARNING")
    return p


def parse_full_size(items: List[str]) -> Dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise dry_run.ConfigCheckError(f"--full_size {it!r}: expected COMPONENT=CONFIG_JSON")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        full_size = parse_full_size(args.full_size)
        conf = dry_run.load_config(args.config, args.override)
        targs = dry_run.parse_task_args(conf, args.token_dir)
        notes = dry_run.check_args(targs)
        print(f"{args.config}: keys and registry names OK (decoder={targs.decoder}, "
              f"audio_encoder={targs.audio_encoder}, pattern={targs.pattern}, model={targs.model})")
        for n in notes:
            print(f"note: {n}")
        if args.no_build:
            return 0
        model = dry_run.build_model(targs)
        print(dry_run.size_report(model, targs, full_size).table())
    except (dry_run.ConfigCheckError, FileNotFoundError, TypeError, ValueError) as e:
        print(f"{args.config}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
