"""Caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr (the COCO protocol).

Hypotheses and references are tokenised by pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1,
shipped in the package, runs on Java) which lower-cases and strips punctuation. METEOR 1.5 runs
on Java too (``/usr/bin/java``); Java must be on PATH. Each key has one hypothesis and one or
more references. BLEU is the corpus-level score (``closest`` reference length); CIDEr is
CIDEr-D as in pycocoevalcap (its IDF comes from the scored set's references, so it depends on
the whole set). **SPICE is not computed**: pycocoevalcap downloads Stanford CoreNLP models at its
first use, which is not possible offline; the result lists it under ``not_computed``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from typing import Dict, Mapping, Sequence, Union

from ualm_tk.scoring.metrics.result import HIGHER, MetricResult, check_same_keys

logger = logging.getLogger(__name__)

BACKBONE = "pycocoevalcap 1.2 (PTBTokenizer)"
NOT_COMPUTED = {"SPICE": "needs Stanford CoreNLP models that pycocoevalcap downloads at first use (offline here)"}


def _as_refs(refs: Mapping[str, Union[str, Sequence[str]]]) -> Dict[str, list]:
    out = {}
    for k, v in refs.items():
        v = [v] if isinstance(v, str) else list(v)
        if not v or any(not isinstance(s, str) or not s.strip() for s in v):
            raise ValueError(f"captions: key {k}: references must be non-empty strings, got {v!r}")
        out[k] = v
    return out


def caption_metrics(hyps: Mapping[str, str], refs: Mapping[str, Union[str, Sequence[str]]],
                    meteor: bool = True) -> Dict[str, MetricResult]:
    """BLEU_1..4, METEOR, ROUGE_L, CIDEr over the full key set (hyp and ref keys must match)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if shutil.which("java") is None:
        raise RuntimeError("caption metrics need Java on PATH (PTBTokenizer, METEOR); /usr/bin/java is expected")
    keys = check_same_keys(hyps, refs, "hypothesis captions", "reference captions")
    refs = _as_refs(refs)
    for k in keys:
        if not isinstance(hyps[k], str) or not hyps[k].strip():
            raise ValueError(f"captions: key {k}: empty hypothesis")
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in refs[k]] for k in keys})
    res = tok.tokenize({k: [{"caption": hyps[k]}] for k in keys})
    gts, res = {k: gts[k] for k in keys}, {k: res[k] for k in keys}  # scorers iterate in dict order
    for k in keys:  # a caption of punctuation only tokenises to nothing; BLEU would crash on it
        if not res[k][0].strip():
            res[k] = ["<empty>"]
    scorers = [(Bleu(4), ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4"]), (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])]
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorers.insert(1, (Meteor(), ["METEOR"]))
    out: Dict[str, MetricResult] = {}
    n_refs = sum(len(v) for v in refs.values())
    for scorer, names in scorers:
        with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its n-gram counts
            score, per = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, per = [score], [per]
        for name, s, p in zip(names, score, per):
            out[name] = MetricResult(name, float(s), HIGHER, BACKBONE, None, len(keys),
                                     {"num_references": n_refs,
                                      "per_key": {k: float(v) for k, v in zip(keys, list(p))}})
        if hasattr(scorer, "meteor_p"):  # stop METEOR's Java process now, not at garbage collection
            scorer.__del__()
    for name in out:
        out[name].details["not_computed"] = NOT_COMPUTED
    return out
