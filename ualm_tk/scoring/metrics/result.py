"""One metric value with the protocol it was measured under, and strict key pairing.

Every number the scorers produce is a :class:`MetricResult`: besides the value it names the
backbone (embedding/classifier model or package), the sample rate the audio was scored at, and
the direction ("lower is better" / "higher is better"), so tables never mix protocols.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

LOWER = "lower is better"
HIGHER = "higher is better"


@dataclass
class MetricResult:
    name: str  # e.g. "FD", "KL", "IS", "CLAP", "BLEU_4", "PESQ"
    value: float
    direction: str  # LOWER or HIGHER
    backbone: str  # embedding / classifier model, or the package that computes it
    sample_rate: Optional[int]  # Hz the audio was scored at; None for text metrics
    num_items: int  # clips, pairs or captions the value is computed over
    details: Dict[str, Any] = field(default_factory=dict)  # std, KL direction, per-key values ...

    def __post_init__(self) -> None:
        if self.direction not in (LOWER, HIGHER):
            raise ValueError(f"{self.name}: direction must be {LOWER!r} or {HIGHER!r}, got {self.direction!r}")
        self.value = float(self.value)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if not math.isfinite(d["value"]):
            d["value"] = str(d["value"])  # JSON has no inf/nan
        return d


def _few(keys: Iterable[str], n: int = 5) -> str:
    keys = sorted(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_same_keys(hyp: Iterable[str], ref: Iterable[str], hyp_name: str = "hypothesis",
                    ref_name: str = "reference") -> List[str]:
    """Return the sorted shared key list; raise ``KeyError`` listing a few missing/extra keys.

    A metric is never computed over a silent subset: every reference key must have a
    hypothesis and every hypothesis key a reference.
    """
    h, r = set(hyp), set(ref)
    missing, extra = r - h, h - r
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) of {ref_name} missing from {hyp_name}: {_few(missing)}")
        if extra:
            parts.append(f"{len(extra)} key(s) of {hyp_name} not in {ref_name}: {_few(extra)}")
        raise KeyMismatchError("; ".join(parts))
    if not r:
        raise KeyMismatchError(f"{ref_name} and {hyp_name} are empty")
    return sorted(r)


class KeyMismatchError(KeyError):
    """Hypothesis and reference key sets differ; the message lists a few keys of each side."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def results_table(results: Mapping[str, MetricResult]) -> str:
    """Markdown table: metric | value | direction | backbone | sample rate | n."""
    lines = ["| metric | value | direction | backbone | sample rate | n |", "|---|---|---|---|---|---|"]
    for key, r in results.items():
        sr = f"{r.sample_rate} Hz" if r.sample_rate else "-"
        extra = ""
        if "std" in r.details:
            extra = f" ± {r.details['std']:.4f}"
        lines.append(f"| {key} | {r.value:.4f}{extra} | {r.direction} | {r.backbone} | {sr} | {r.num_items} |")
    return "\n".join(lines)
