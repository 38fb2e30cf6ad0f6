"""Tempo augmentation that moves a rate label (stage 5a): unseen (voice, speed) and (melody, tempo) pairs.

The mini corpus's test clips are held-out combinations: a voice never heard at this speaking rate,
a melody or drum pattern never heard at this tempo. An encoder trained on the combinations it saw
learns shortcuts ("this voice is slow"). A pitch-preserving time stretch (sox's WSOLA ``tempo``
effect) by the ratio between two answers of a rate question turns a training clip into one with
the other answer: espeak-ng's normal speech (165 words/min) sped up 215/165 = 1.30x is fast
speech of the same voice, a slow melody (72 BPM) sped up 1.5x is a medium one. Nothing else a
question asks about moves: pitch, timbre, order, counts and envelopes survive a time stretch, and
the clip's timed events (frame loss) are rescaled with it.

``rates``: ``qtype -> {answer: rate}`` in any unit where a higher number is faster (words/min,
BPM); a clip is stretched only when exactly one of its labels has a rate, and only to answers within
``max_ratio`` of it (neighbours, not slow <-> fast). ``prob``: the chance that a training clip
with variants is replaced by one of them in a batch. Shapes: ``wav [L]`` -> ``[round(L / ratio)]``.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)


class TempoRelabelError(ValueError):
    """The tempo configuration does not fit the label space; the message names the key."""


def time_stretch(wav: np.ndarray, sample_rate: int, ratio: float) -> np.ndarray:
    """``wav [L]`` played ``ratio`` times as fast, pitch kept (sox ``tempo``, WSOLA) -> ``[~L / ratio]`` float32."""
    if ratio <= 0:
        raise ValueError(f"time_stretch: ratio must be > 0, got {ratio}")
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sample_rate)]
    try:
        proc = subprocess.run(["sox", "-q", *raw, "-", *raw, "-", "tempo", f"{ratio:.6f}"],
                              input=np.ascontiguousarray(wav, dtype=np.float32).tobytes(),
                              capture_output=True, check=True)
    except FileNotFoundError:
        raise RuntimeError("time_stretch: the sox program is not on PATH (tools/install_system.sh installs it)") from None
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"time_stretch: sox tempo {ratio} failed: {e.stderr.decode(errors='replace').strip()}") from None
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


@dataclass(frozen=True)
class TempoRelabel:
    """Which labels a time stretch moves, and how: ``rates[qtype index][answer index] = rate``."""

    rates: Mapping[int, Mapping[int, float]]
    prob: float = 0.0
    max_ratio: float = 1.6

    @classmethod
    def from_conf(cls, rates: Mapping[str, Mapping[str, Any]], qtypes: Sequence[str],
                  answers: Mapping[str, Sequence[str]], prob: float, max_ratio: float) -> "TempoRelabel":
        """Names -> indices of the label space, every name and number checked."""
        if not 0.0 <= prob <= 1.0:
            raise TempoRelabelError(f"tempo_prob must be in [0, 1], got {prob!r}")
        if not isinstance(max_ratio, (int, float)) or max_ratio <= 1.0:
            raise TempoRelabelError(f"tempo_max_ratio must be a number > 1, got {max_ratio!r}")
        if not isinstance(rates, Mapping):
            raise TempoRelabelError(f"tempo_rates must map a question type to {{answer: rate}}, got {rates!r}")
        out: Dict[int, Dict[int, float]] = {}
        for qtype, table in rates.items():
            if qtype not in qtypes:
                raise TempoRelabelError(f"tempo_rates: '{qtype}' is not a categorical question type of qtypes.json "
                                        f"(known: {', '.join(qtypes)})")
            if not isinstance(table, Mapping) or len(table) < 2:
                raise TempoRelabelError(f"tempo_rates.{qtype}: give a rate for at least two answers, got {table!r}")
            row = {}
            for ans, rate in table.items():
                if str(ans) not in answers[qtype]:
                    raise TempoRelabelError(f"tempo_rates.{qtype}: '{ans}' is not an answer of '{qtype}' "
                                            f"(answers: {', '.join(answers[qtype])})")
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                    raise TempoRelabelError(f"tempo_rates.{qtype}.{ans}: the rate must be a number > 0, got {rate!r}")
                row[list(answers[qtype]).index(str(ans))] = float(rate)
            out[qtypes.index(qtype)] = row
        return cls(out, float(prob), float(max_ratio))

    @property
    def active(self) -> bool:
        return self.prob > 0 and bool(self.rates)

    def moves(self, labels: Sequence[Tuple[int, int]]) -> List[Tuple[float, List[Tuple[int, int]]]]:
        """``labels`` of a clip -> ``[(stretch ratio, new labels)]``: none unless exactly one label has a rate."""
        rated = [i for i, (q, a) in enumerate(labels) if a in self.rates.get(q, {})]
        if len(rated) != 1:
            return []
        i = rated[0]
        q, a = labels[i]
        out = []
        for b, rate in sorted(self.rates[q].items()):
            ratio = rate / self.rates[q][a]
            if b != a and 1.0 / self.max_ratio <= ratio <= self.max_ratio:
                out.append((ratio, [(q, b) if j == i else lab for j, lab in enumerate(labels)]))
        return out
