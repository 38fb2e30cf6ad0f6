"""Score decoded answers of an understanding task against the references of its data.json.

    python -m ualm_tk.bin.score_understanding --data_json dump/audio_qa/test/data.json \\
        --hyp exp/ualm_tiny/decode_x/audio_qa/test/text --qtypes data/qtypes.json \\
        --output_dir exp/ualm_tiny/decode_x/audio_qa/test

audio_qa / text_only: exact match of normalised answers vs ``meta.answer`` per ``meta.qtype``
(n, accuracy, chance levels), overall and over the categorical qtypes of qtypes.json.
audio_to_caption: mean sentence BLEU-1 vs ``meta.caption`` (and the exact-match share).
Writes ``scores_understanding.json`` and ``scores_understanding.md``. The hypothesis keys must be
exactly the data.json keys, or its first M keys with ``--max_examples M`` (missing or extra keys
are an error listing a few of them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

logger = logging.getLogger("ualm_tk.bin.score_understanding")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_json", required=True, help="dump/<task>/<set>/data.json (references in meta)")
    p.add_argument("--hyp", required=True, help="Kaldi text file: key answer")
    p.add_argument("--qtypes", default=None, help="data/qtypes.json (categorical flag and answer set per qtype)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_examples", type=int, default=None,
                   help="score the first M keys (byte order) only: the subset lm_decode --max_examples M decodes")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from ualm_tk.data.kaldi_files import KaldiFileError, byte_order_key, read_kaldi_file
    from ualm_tk.data.task_data import TaskData
    from ualm_tk.data.task_templates import TaskDataError
    from ualm_tk.scoring.understanding import ScoringError, check_keys, score_captions, score_qa, to_markdown

    try:
        data = TaskData.load(args.data_json)
    except TaskDataError as e:
        raise SystemExit(f"--data_json: {e}")
    if not Path(args.hyp).is_file():
        raise SystemExit(f"--hyp {args.hyp}: not found")
    try:
        hyp = read_kaldi_file(args.hyp, allow_empty_value=True)
    except KaldiFileError as e:
        raise SystemExit(f"--hyp: {e}")
    qtypes = None
    if args.qtypes:
        try:
            qtypes = json.loads(Path(args.qtypes).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"--qtypes {args.qtypes}: {e}")
    field = "caption" if data.task == "audio_to_caption" else "answer"
    keys = sorted(data.keys(), key=byte_order_key)
    if args.max_examples is not None:
        if args.max_examples < 1:
            raise SystemExit(f"--max_examples must be >= 1, got {args.max_examples}")
        keys = keys[: args.max_examples]
        logger.info("scoring the first %d of %d examples (--max_examples)", len(keys), data.num_examples)
    refs, qtype_of = {}, {}
    for k in keys:
        meta = data.meta(k)
        if not meta.get(field):
            raise SystemExit(f"{args.data_json}: key '{k}': meta has no '{field}' (the reference); task {data.task}")
        refs[k] = meta[field]
        if "qtype" in meta:
            qtype_of[k] = meta["qtype"]
    try:
        check_keys(hyp, refs, args.hyp, args.data_json)
    except ScoringError as e:
        raise SystemExit(str(e))
    if field == "caption":
        scores = score_captions(hyp, refs, data.task)
    else:
        scores = score_qa(hyp, refs, qtype_of, data.task, qtypes)
        if qtypes is not None:
            unknown = sorted(q for q, r in scores["per_qtype"].items() if r["categorical"] is None)
            if unknown:
                logger.warning("qtype(s) not in %s: %s", args.qtypes, ", ".join(unknown))
    scores.update(data_json=args.data_json, hyp=args.hyp, subset_of=data.num_examples if len(keys) < data.num_examples else None)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores_understanding.json").write_text(json.dumps(scores, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md = to_markdown(scores, f"{data.task}: {args.data_json}")
    (out / "scores_understanding.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
