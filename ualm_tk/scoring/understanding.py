"""Understanding scores: exact-match accuracy per question type, with chance levels.

* :func:`normalize_answer`: lowercase, apostrophes dropped, other punctuation -> space (a dot or
  comma between digits is kept / dropped as in ``2.5`` / ``1,000``), number words -> digits
  (``twenty one`` -> ``21``), spaces collapsed. Applied to hypothesis and reference alike.
* :func:`score_qa`: per ``meta.qtype``: ``n``, ``accuracy``, ``chance_majority`` (share of the
  most frequent normalised reference answer of that qtype in these refs) and, for categorical
  qtypes of ``qtypes.json``, ``chance_uniform`` = 1/#answers; overall accuracy over all examples
  and over the categorical qtypes.
* :func:`score_captions`: for captioning (exact match is meaningless there): mean sentence BLEU-1
  (clipped unigram precision x brevity penalty, normalised tokens) and the exact-match share.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SMALL = {w: i for i, w in enumerate(_UNITS)}
_SMALL.update({w: 10 * i for i, w in enumerate(_TENS) if w})
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


class ScoringError(ValueError):
    """Hypotheses and references do not match up; the message lists the keys."""


def _numbers_to_digits(words: List[str]) -> List[str]:
    out: List[str] = []
    i = 0
    while i < len(words):
        if words[i] not in _SMALL:
            out.append(words[i])
            i += 1
            continue
        total, cur, j = 0, 0, i
        while j < len(words):
            w = words[j]
            if w in _SMALL:
                v = _SMALL[w]
                # "twenty one" adds; "one two" is two numbers
                if cur and not (cur % 100 >= 20 and cur % 10 == 0 and v < 10) and not (cur % 100 == 0 and v < 100):
                    break
                cur += v
            elif w in _SCALES and (cur or total):
                scale = _SCALES[w]
                if scale == 100:
                    cur = max(cur, 1) * 100
                else:
                    total += max(cur, 1) * scale
                    cur = 0
            elif w == "and" and j + 1 < len(words) and words[j + 1] in _SMALL and (cur % 100 == 0 and cur):
                pass
            else:
                break
            j += 1
        out.append(str(total + cur))
        i = j
    return out


def normalize_answer(text: str) -> str:
    """See the module doc; e.g. ``"Twenty-One."`` -> ``"21"``, ``"It's A Dog!"`` -> ``"its a dog"``."""
    s = text.lower()
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,000 -> 1000
    s = re.sub(r"['’`]", "", s)
    s = re.sub(r"(?<=\d)\.(?=\d)", "\x00", s)  # keep decimal points
    s = re.sub(r"[^\w\s\x00]|_", " ", s)
    s = s.replace("\x00", ".")
    return " ".join(_numbers_to_digits(s.split()))


def check_keys(hyp: Mapping[str, str], refs: Mapping[str, Any], hyp_name: str, ref_name: str) -> None:
    """Raise naming a few missing/extra keys unless ``hyp`` and ``refs`` have exactly the same keys."""
    missing = sorted(set(refs) - set(hyp))
    extra = sorted(set(hyp) - set(refs))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) of {ref_name} have no hypothesis ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
        if extra:
            parts.append(f"{len(extra)} hypothesis key(s) are not in {ref_name} ({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})")
        raise ScoringError(f"{hyp_name}: " + "; ".join(parts))


def qtype_info(qtypes: Optional[Mapping[str, Any]], task: str, qtype: str) -> Optional[Mapping[str, Any]]:
    """The qtypes.json entry of ``qtype`` (text_only qtypes live under ``_text_only``)."""
    if not qtypes:
        return None
    if task == "text_only" and qtype in qtypes.get("_text_only", {}):
        return qtypes["_text_only"][qtype]
    entry = qtypes.get(qtype)
    return entry if isinstance(entry, Mapping) and "categorical" in entry else None


def score_qa(
    hyp: Mapping[str, str],
    refs: Mapping[str, str],
    qtype_of: Mapping[str, str],
    task: str,
    qtypes: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Exact-match accuracy of normalised answers (see module doc). ``qtype_of`` may lack keys
    (they count as qtype ``_none``)."""
    groups: Dict[str, List[str]] = {}
    for k in refs:
        groups.setdefault(qtype_of.get(k) or "_none", []).append(k)
    per: Dict[str, Dict[str, Any]] = {}
    n_all = c_all = n_cat = c_cat = 0
    for qt in sorted(groups):
        ks = groups[qt]
        norm_refs = [normalize_answer(refs[k]) for k in ks]
        correct = sum(normalize_answer(hyp[k]) == r for k, r in zip(ks, norm_refs))
        counts = Counter(norm_refs)
        majority, maj_n = counts.most_common(1)[0]
        info = qtype_info(qtypes, task, qt)
        categorical = None if info is None else bool(info.get("categorical"))
        answers = info.get("answers") if info else None
        row: Dict[str, Any] = dict(
            n=len(ks), correct=correct, accuracy=correct / len(ks),
            chance_majority=maj_n / len(ks), majority_answer=majority, categorical=categorical,
            num_answers=len(answers) if categorical and answers else None,
            chance_uniform=1.0 / len(answers) if categorical and answers else None,
        )
        per[qt] = row
        n_all += len(ks)
        c_all += correct
        if categorical:
            n_cat += len(ks)
            c_cat += correct
    return dict(
        metric="exact match after normalisation (lowercase, no punctuation, number words as digits); higher is better",
        task=task, num_examples=n_all, accuracy=c_all / n_all if n_all else None,
        num_categorical=n_cat, accuracy_categorical=c_cat / n_cat if n_cat else None,
        qtypes_known=qtypes is not None, per_qtype=per,
    )


def bleu1(hyp: str, ref: str) -> float:
    """Sentence BLEU-1 of normalised tokens: clipped unigram precision x brevity penalty."""
    h, r = normalize_answer(hyp).split(), normalize_answer(ref).split()
    if not h:
        return 0.0
    rc = Counter(r)
    match = sum(min(c, rc[w]) for w, c in Counter(h).items())
    bp = 1.0 if len(h) > len(r) else math.exp(1 - len(r) / len(h))
    return bp * match / len(h)


def score_captions(hyp: Mapping[str, str], refs: Mapping[str, str], task: str) -> Dict[str, Any]:
    keys = sorted(refs)
    b = [bleu1(hyp[k], refs[k]) for k in keys]
    em = sum(normalize_answer(hyp[k]) == normalize_answer(refs[k]) for k in keys)
    return dict(
        metric="mean sentence BLEU-1 of normalised tokens (one reference); higher is better. Not a standard caption "
               "metric: the caption metrics (BLEU-4/CIDEr/METEOR...) are scored separately",
        task=task, num_examples=len(keys), bleu1=sum(b) / len(b) if b else None,
        exact_match=em / len(keys) if keys else None,
    )


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def to_markdown(scores: Mapping[str, Any], title: str) -> str:
    lines = [f"# {title}", "", f"Metric: {scores['metric']}.", ""]
    if "per_qtype" not in scores:
        lines += ["| task | n | BLEU-1 (%) | exact match (%) |", "|---|---:|---:|---:|",
                  f"| {scores['task']} | {scores['num_examples']} | {_pct(scores['bleu1'])} | {_pct(scores['exact_match'])} |", ""]
        return "\n".join(lines)
    lines += ["| qtype | categorical | n | accuracy (%) | chance: majority (%) | chance: 1/#answers (%) |",
              "|---|---|---:|---:|---:|---:|"]
    for qt, r in scores["per_qtype"].items():
        cat = "?" if r["categorical"] is None else ("yes" if r["categorical"] else "no")
        lines.append(f"| {qt} | {cat} | {r['n']} | {_pct(r['accuracy'])} | {_pct(r['chance_majority'])} | {_pct(r['chance_uniform'])} |")
    lines.append(f"| **all categorical** | | {scores['num_categorical']} | {_pct(scores['accuracy_categorical'])} | | |")
    lines.append(f"| **all** | | {scores['num_examples']} | {_pct(scores['accuracy'])} | | |")
    lines.append("")
    return "\n".join(lines)
