"""Text-only arithmetic and counting word problems with exact answers.

Each problem is identified by its operands (e.g. ``add:7:5``); a stable hash of that
identity and the seed assigns it to exactly one split (test 10 %, valid 10 %, train 80 %),
so held-out problems never share an operand tuple with training problems.
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Dict, List, Tuple

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo"]
ITEMS = ["apples", "books", "marbles", "pencils", "stickers", "coins", "cards", "shells"]
WORDS = ["cat", "dog", "bird", "fish", "tree", "star", "drum", "bell"]

QTYPES = {
    "addition": "sum of two numbers in a short story",
    "subtraction": "difference of two numbers in a short story",
    "multiplication": "product of two numbers (groups of items)",
    "two_step": "add then subtract",
    "word_count": "count how often a word occurs in a list",
}


def split_of(seed: int, ident: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}|{ident}".encode()).digest()[:4], "big") % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


def _addition(rng: random.Random) -> Tuple[str, str, str]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    return (f"add:{a}:{b}", f"{n} has {a} {it} and gets {b} more. How many {it} does {n} have now?", str(a + b))


def _subtraction(rng: random.Random) -> Tuple[str, str, str]:
    a = rng.randint(10, 90)
    b = rng.randint(1, a - 1)
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    return (f"sub:{a}:{b}", f"{n} had {a} {it} and gave away {b}. How many {it} are left?", str(a - b))


def _multiplication(rng: random.Random) -> Tuple[str, str, str]:
    a, b = rng.randint(2, 40), rng.randint(2, 15)
    it = rng.choice(ITEMS)
    return (f"mul:{a}:{b}", f"There are {a} boxes with {b} {it} in each box. How many {it} are there in total?",
            str(a * b))


def _two_step(rng: random.Random) -> Tuple[str, str, str]:
    a, b = rng.randint(5, 40), rng.randint(2, 30)
    c = rng.randint(1, a + b - 1)
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    return (f"two:{a}:{b}:{c}", f"{n} has {a} {it}, buys {b} more and then loses {c}. How many {it} does {n} have?",
            str(a + b - c))


def _word_count(rng: random.Random) -> Tuple[str, str, str]:
    target = rng.choice(WORDS)
    seq = [rng.choice(WORDS) for _ in range(rng.randint(5, 12))]
    return ("cnt:" + target + ":" + ",".join(seq),
            f"How many times does the word \"{target}\" appear in this list: {', '.join(seq)}?",
            str(seq.count(target)))


MAKERS: Dict[str, Callable[[random.Random], Tuple[str, str, str]]] = {
    "addition": _addition, "subtraction": _subtraction, "multiplication": _multiplication,
    "two_step": _two_step, "word_count": _word_count,
}


def make_problems(seed: int, split: str, n: int) -> List[Dict[str, str]]:
    """n distinct problems of this split: [{key, question, answer, qtype, ident}]."""
    rng = random.Random(f"{seed}:text:{split}")
    names = sorted(MAKERS)
    exhausted = set()
    seen = set()
    out: List[Dict[str, str]] = []
    while len(out) < n:
        live = [q for q in names if q not in exhausted]
        if not live:
            raise RuntimeError(f"could not draw {n} distinct {split} text problems (got {len(out)})")
        qtype = live[len(out) % len(live)]
        for _ in range(300):
            ident, q, ans = MAKERS[qtype](rng)
            if ident not in seen and split_of(seed, ident) == split:
                break
        else:
            exhausted.add(qtype)  # this kind has no fresh operands left for the split
            continue
        seen.add(ident)
        out.append({"key": f"text-{split}-{len(out):05d}", "question": q, "answer": ans,
                    "qtype": qtype, "ident": ident})
    return out
