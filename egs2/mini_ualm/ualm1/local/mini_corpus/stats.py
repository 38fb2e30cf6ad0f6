"""corpus_stats.md: what the corpus holds, per split."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List

from . import vocab as V

SPLITS = ("train", "valid", "test")


def _table(title: str, rows: Dict[str, Dict[str, int]], first: str) -> List[str]:
    out = [f"## {title}", "", f"| {first} | " + " | ".join(SPLITS) + " | total |",
           "|---|" + "---:|" * (len(SPLITS) + 1)]
    for name in sorted(rows):
        vals = [rows[name].get(s, 0) for s in SPLITS]
        out.append(f"| {name} | " + " | ".join(str(v) for v in vals) + f" | {sum(vals)} |")
    return out + [""]


def corpus_stats(per_split, kept: Dict[str, List[Dict]], wall_s: float, nj: int,
                 replaced: List[str], dropped: List[str]) -> str:
    lines = ["# mini_ualm corpus statistics", "",
             "| split | clips | hours | mean clip (s) | stereo clips | QA pairs | text problems |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in SPLITS:
        metas = kept[s]
        secs = sum(m["duration"] for m in metas)
        lines.append(f"| {s} | {len(metas)} | {secs / 3600:.3f} | {secs / max(1, len(metas)):.2f} | "
                     f"{sum(m['channels'] == 2 for m in metas)} | {len(per_split[s]['qa/question'])} | "
                     f"{len(per_split[s]['text_only/question'])} |")
    lines.append("")
    cats: Dict[str, Dict[str, int]] = {}
    classes: Dict[str, Dict[str, int]] = {}
    qtypes: Dict[str, Dict[str, int]] = {}
    ttypes: Dict[str, Dict[str, int]] = {}
    for s in SPLITS:
        for m in kept[s]:
            cats.setdefault(m["category"], Counter())[s] += 1
            for e in m["events"]:
                classes.setdefault(e["class"], Counter())[s] += 1
        for q in per_split[s]["qa/qtype"].values():
            qtypes.setdefault(q, Counter())[s] += 1
        for q in per_split[s]["text_only/qtype"].values():
            ttypes.setdefault(q, Counter())[s] += 1
    lines += _table("Clips per category", cats, "category")
    lines += _table("Events per event class (an event inside a composition counts too)", classes, "class")
    lines += _table("QA pairs per qtype", qtypes, "qtype")
    lines += _table("Text-only problems per qtype", ttypes, "qtype")
    lines += ["## Generation", "",
              f"- wall time: {wall_s:.1f} s with {nj} worker process(es)",
              f"- clips replaced after a failed render/check: {len(replaced)}",
              f"- clips dropped: {len(dropped)}"]
    lines += [f"  - replaced {r}" for r in replaced] + [f"  - dropped {d}" for d in dropped]
    return "\n".join(lines) + "\n"
