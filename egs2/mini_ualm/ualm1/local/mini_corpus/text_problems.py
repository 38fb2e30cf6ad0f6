"""Text-only arithmetic and counting word problems with exact answers and worked solutions.

Each problem is identified by its operands (e.g. ``add:7:5``); a stable hash of that
identity and the seed assigns it to exactly one split (test 10 %, valid 10 %, train 80 %),
so held-out problems never share an operand tuple with training problems.

:func:`solve` derives a worked solution from the identity alone: the school column methods, one
digit at a time, each step restating what is left to do (the "detailed scratch-pad" format that
small transformers learn to execute: every step reads the last digit of each remaining operand
and one table fact, so nothing depends on memorising a sum of two whole numbers). The LM is
trained to write it as its thinking (an assistant text segment closed by ``<eot>``) before the
answer. Column addition of 27 + 45::

    27 + 45 carry 0 result : 7 + 5 + 0 = 12 ; 2 + 4 carry 1 result 2 : 2 + 4 + 1 = 7 ; carry 0 result 72

Subtraction borrows (``12 - 7 - 0 = 5`` when the top digit 2 is too small, then ``borrow 1``),
leading zeros are dropped at the end (``result 04 ; 4``); multiplication multiplies the top
number by each digit of the bottom one (``37 x 2``, then ``37 x 1`` shifted: ``370``) and adds the
partial products by column addition; ``two_step`` is an addition then a subtraction;
``word_count`` walks the numbered list item by item, sets the item beside the word asked for, says
whether they are the same and keeps a running count in words (``dog : 1 cat = dog ? no zero , 2 dog = dog ?
yes one , ... so 1``). The list is numbered in the question so that copying item i is a lookup of the
unique number i: in an unnumbered list of 8 words each word recurs, copying by content is ambiguous, and
the session-6 model wrote the asked word for every item. Restating the asked word makes the comparison one
between neighbouring tokens, and a count in words keeps the digits of the solution for the item numbers
(a digit count ``2`` also matched the lookup of item 2). Measured on word counts alone (the recipe's 256 x 6
decoder, 4,096 positions a step, valid exact match after 400 steps): 45 % with digit counts and no
restated word (the majority answer's share), 40 % with word counts alone, 62.5 % with both.
The asked word stands without quotes: the BPE reads ``"drum"`` as ``▁" drum "`` and ``drum`` in the
list as ``▁drum``, two different ids that the model would have to learn to match.

The training split also holds single table facts (``There are 3 boxes with 9 apples in each box and 6 more
apples beside them. ...`` -> ``3 x 9 + 6 = 33``), one turn in six, answered as multiplications: exactly the step
``x x d + carry`` of column multiplication, drawn over the digits x, d and the carries below d (12,800 training
problems hold 445 of the 460 facts). The 448 training operand tuples
of the story problems produce only 194 of these facts, and 6 of the 40 test multiplications needed a fact no
training problem held (at 1,200 steps of 5b, 19 of the 23 wrong test multiplications held a wrong table fact).
Held-out splits hold no table facts, so they need no split of their own.

On the training split every kind keeps its share: a kind whose fresh operand tuples run out
(multiplication has 448 training tuples) continues with repeated tuples in new wording instead of
leaving its share to the others (it was 3.5 % of 12,800 training problems, every other kind ~24 %).
Held-out splits hold distinct problems only.
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
    "word_count": "count how often a word occurs in a numbered list",
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
            f"How many times does the word {target} appear in this numbered list: "
            f"{', '.join(f'{i} {w}' for i, w in enumerate(seq, 1))}?",
            str(seq.count(target)))


def _table_fact(rng: random.Random) -> Tuple[str, str, str]:
    """One step of column multiplication, ``x x d + carry``, as a story (training split only)."""
    d = rng.randint(0, 9)
    x, c = rng.randint(0, 9), rng.randint(0, max(d - 1, 0))
    it = rng.choice(ITEMS)
    return (f"fact:{x}:{d}:{c}", f"There are {x} boxes with {d} {it} in each box and {c} more {it} beside them. "
            f"How many {it} are there in total?", str(x * d + c))


MAKERS: Dict[str, Callable[[random.Random], Tuple[str, str, str]]] = {
    "addition": _addition, "subtraction": _subtraction, "multiplication": _multiplication,
    "two_step": _two_step, "word_count": _word_count,
}


# ============================================================================ worked solutions
def _digits(n: int, width: int) -> str:
    return str(n).rjust(width, "0")


def _column_add(a: int, b: int) -> Tuple[List[str], int]:
    """Steps of a + b in columns (operands zero-padded to one width), and the sum."""
    w = max(len(str(a)), len(str(b)))
    top, bot, carry, res = _digits(a, w), _digits(b, w), 0, ""
    steps = []
    while top:
        x, y = int(top[-1]), int(bot[-1])
        s = x + y + carry
        steps.append(f"{top} + {bot} carry {carry} result {res} : {x} + {y} + {carry} = {s} ;")
        top, bot, carry, res = top[:-1], bot[:-1], s // 10, str(s % 10) + res
    if carry:
        res = str(carry) + res
        steps.append(f"carry {carry} result {res}")
    else:
        steps.append(f"carry 0 result {res}")
    return steps, int(res)


def _column_sub(a: int, b: int) -> Tuple[List[str], int]:
    """Steps of a - b (a >= b) in columns with borrowing, and the difference."""
    if a < b:
        raise ValueError(f"column subtraction needs a >= b, got {a} - {b}")
    w = len(str(a))
    top, bot, borrow, res = _digits(a, w), _digits(b, w), 0, ""
    steps = []
    while top:
        x, y = int(top[-1]), int(bot[-1])
        if x - y - borrow < 0:
            d, nxt, shown = x + 10 - y - borrow, 1, f"1{x}"
        else:
            d, nxt, shown = x - y - borrow, 0, str(x)
        steps.append(f"{top} - {bot} borrow {borrow} result {res} : {shown} - {y} - {borrow} = {d} ;")
        top, bot, borrow, res = top[:-1], bot[:-1], nxt, str(d) + res
    steps.append(f"result {res} ; {int(res)}")
    return steps, int(res)


def _column_mul_digit(a: int, d: int) -> Tuple[List[str], int]:
    """Steps of a x d for one digit d, and the product."""
    top, carry, res = str(a), 0, ""
    steps = []
    while top:
        x = int(top[-1])
        p = x * d + carry
        steps.append(f"{top} x {d} carry {carry} result {res} : {x} x {d} + {carry} = {p} ;")
        top, carry, res = top[:-1], p // 10, str(p % 10) + res
    if carry:
        res = str(carry) + res
    steps.append(f"carry {carry} result {res}")
    return steps, int(res)


def _column_mul(a: int, b: int) -> Tuple[List[str], int]:
    """a x b: a times each digit of b (last digit first, shifted by its place), then the sum."""
    steps: List[str] = []
    partials: List[int] = []
    for place, dch in enumerate(reversed(str(b))):
        sub, p = _column_mul_digit(a, int(dch))
        shifted = p * 10 ** place
        steps += ([";"] if place else []) + sub
        if place:
            steps.append(f"shift {place} ; {shifted}")
        partials.append(shifted)
    total = partials[0]
    for p in partials[1:]:
        sub, total = _column_add(total, p)
        steps += [";"] + sub
    steps.append(f"; {total}")
    return steps, total


COUNT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
               "twelve"]


def _count_word(target: str, seq: List[str]) -> Tuple[List[str], int]:
    """Item by item: ``i word = target ? yes|no count ,`` (the count in words), then ``so <count>``."""
    if len(seq) >= len(COUNT_WORDS):
        raise ValueError(f"word counts go up to {len(COUNT_WORDS) - 1} items, got {len(seq)}")
    n, steps = 0, []
    for i, w in enumerate(seq, 1):
        n += w == target
        steps.append(f"{i} {w} = {target} ? {'yes' if w == target else 'no'} {COUNT_WORDS[n]} ,")
    steps.append(f"so {n}")
    return steps, n


def solve(ident: str) -> Tuple[str, str]:
    """(worked solution, answer) of the problem ``ident`` (``add:a:b``, ``sub:a:b``, ``mul:a:b``,
    ``two:a:b:c``, ``cnt:target:w1,w2,...``); see the module doc for the format."""
    kind, *args = ident.split(":")
    if kind in ("add", "sub", "mul"):
        a, b = (int(x) for x in args)
        op = {"add": ("+", _column_add), "sub": ("-", _column_sub), "mul": ("x", _column_mul)}[kind]
        steps, ans = op[1](a, b)
        steps.insert(0, f"{a} {op[0]} {b} :")
    elif kind == "fact":
        x, d, c = (int(v) for v in args)
        steps, ans = [f"{x} x {d} + {c} = {x * d + c}"], x * d + c
    elif kind == "two":
        a, b, c = (int(x) for x in args)
        s1, mid = _column_add(a, b)
        s2, ans = _column_sub(mid, c)
        steps = [f"{a} + {b} :"] + s1 + [f"; {mid} - {c} :"] + s2
    elif kind == "cnt":
        target, seq = args[0], args[1].split(",")
        steps, ans = _count_word(target, seq)
        steps.insert(0, f"{target} :")
    else:
        raise ValueError(f"unknown problem identity {ident!r}")
    return " ".join(" ".join(steps).split()), str(ans)  # an empty "result" leaves no double space


def make_problems(seed: int, split: str, n: int) -> List[Dict[str, str]]:
    """n problems of this split: [{key, question, answer, solution, qtype, ident}], the kinds in turn.

    Held-out splits: distinct operand tuples only; a kind whose tuples run out leaves its turn to the
    others. Training split: a kind whose fresh tuples run out repeats its earlier ones (a new draw of
    the wording), so every kind keeps an equal share of the problems."""
    rng = random.Random(f"{seed}:text:{split}")
    names = sorted(MAKERS)
    # training turns: every kind, plus one turn of single table facts (answered as multiplications)
    turns = names + ["table_fact"] if split == "train" else names
    repeat_when_exhausted = split == "train"
    exhausted = set()
    seen = set()
    out: List[Dict[str, str]] = []
    while len(out) < n:
        live = turns if repeat_when_exhausted else [q for q in names if q not in exhausted]
        if not live:
            raise RuntimeError(f"could not draw {n} distinct {split} text problems (got {len(out)})")
        qtype = live[len(out) % len(live)]
        if qtype == "table_fact":  # no held-out split holds table facts: they need no split of their own
            out.append(_checked_problem(f"text-{split}-{len(out):05d}", *_table_fact(rng), "multiplication"))
            continue
        for _ in range(300):
            ident, q, ans = MAKERS[qtype](rng)
            if split_of(seed, ident) == split and (ident not in seen or qtype in exhausted):
                break
        else:
            if qtype in exhausted:
                raise RuntimeError(f"no {qtype} problem of the {split} split found in 300 draws")
            exhausted.add(qtype)  # this kind has no fresh operands left for the split
            continue
        seen.add(ident)
        out.append(_checked_problem(f"text-{split}-{len(out):05d}", ident, q, ans, qtype))
    return out


def _checked_problem(key: str, ident: str, question: str, answer: str, qtype: str) -> Dict[str, str]:
    """One problem record, its worked solution checked against its answer."""
    solution, solved = solve(ident)
    if solved != answer:
        raise AssertionError(f"worked solution of {ident} ends in {solved}, the answer is {answer}")
    return {"key": key, "question": question, "answer": answer, "solution": solution, "qtype": qtype, "ident": ident}
