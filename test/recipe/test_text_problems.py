"""The worked solutions of the mini corpus's text problems (local/mini_corpus/text_problems.py):
every step they state is true arithmetic and they end in the answer, so the LM learns a correct
procedure (a wrong step would teach a wrong table fact)."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "egs2" / "mini_ualm" / "ualm1" / "local"))

from mini_corpus import text_problems as tp  # noqa: E402

STEP = re.compile(r"(\d+) ([-+x]) (\d+) ([-+]) (\d+) = (\d+)")


def _check_steps(solution: str) -> int:
    """Verify every column step ``a OP b +/- c = r`` of a solution; return how many there were."""
    n = 0
    for a, op, b, op2, c, r in STEP.findall(solution):
        a, b, c, r = int(a), int(b), int(c), int(r)
        first = {"+": a + b, "-": a - b, "x": a * b}[op]
        assert (first + c if op2 == "+" else first - c) == r, (solution, a, op, b, op2, c, r)
        assert 0 <= r, solution
        n += 1
    return n


@pytest.mark.parametrize("split,n", [("train", 3000), ("test", 200)])
def test_every_worked_step_is_true_and_the_solution_ends_in_the_answer(split, n):
    kinds = set()
    for p in tp.make_problems(0, split, n):
        steps = _check_steps(p["solution"])
        assert p["solution"].split()[-1] == p["answer"], p
        if p["qtype"] != "word_count":
            assert steps >= 1, p  # arithmetic is shown column by column
        kinds.add(p["qtype"])
    assert kinds == set(tp.QTYPES)


def test_column_addition_carries_and_restates_what_is_left():
    sol, ans = tp.solve("add:27:45")
    assert ans == "72"
    assert sol == ("27 + 45 : 27 + 45 carry 0 result : 7 + 5 + 0 = 12 ; "
                   "2 + 4 carry 1 result 2 : 2 + 4 + 1 = 7 ; carry 0 result 72")
    sol, ans = tp.solve("add:99:9")  # the last carry becomes a new leading digit; operands zero-padded
    assert ans == "108" and "99 + 09 carry 0" in sol and sol.endswith("carry 1 result 108")


def test_column_subtraction_borrows_and_drops_leading_zeros():
    sol, ans = tp.solve("sub:52:48")
    assert ans == "4"
    assert "12 - 8 - 0 = 4" in sol and "5 - 4 - 1 = 0" in sol and sol.endswith("result 04 ; 4")
    with pytest.raises(ValueError, match="a >= b"):
        tp._column_sub(3, 7)


def test_multiplication_adds_shifted_partial_products():
    sol, ans = tp.solve("mul:37:12")
    assert ans == "444"
    assert "result 74" in sol and "shift 1 ; 370" in sol and "074 + 370" in sol and sol.endswith("; 444")
    sol, ans = tp.solve("mul:8:9")  # one digit: no shift, no addition
    assert ans == "72" and "shift" not in sol and " + " not in sol.replace("+ 0 =", "")


def test_two_step_and_word_count():
    sol, ans = tp.solve("two:35:27:59")
    assert ans == "3" and "result 62 ; 62 - 59 :" in sol
    sol, ans = tp.solve("cnt:dog:cat,dog,bird,dog,fish")
    assert (sol, ans) == ("dog : 1 cat = dog ? no zero , 2 dog = dog ? yes one , 3 bird = dog ? no one , "
                          "4 dog = dog ? yes two , 5 fish = dog ? no two , so 2", "2")
    # the longest lists (12 items) can count every item; a longer one has no count word
    sol, ans = tp.solve("cnt:cat:" + ",".join(["cat"] * 12))
    assert ans == "12" and "12 cat = cat ? yes twelve , so 12" in sol
    with pytest.raises(ValueError, match="up to 12 items"):
        tp.solve("cnt:cat:" + ",".join(["cat"] * 13))


def test_word_count_lists_are_numbered_as_the_solution_reads_them():
    p = next(p for p in tp.make_problems(0, "test", 50) if p["qtype"] == "word_count")
    items = p["ident"].split(":")[2].split(",")
    numbered = ", ".join(f"{i} {w}" for i, w in enumerate(items, 1))
    assert p["question"].endswith(f"numbered list: {numbered}?"), p
    assert f"the word {p['ident'].split(':')[1]} appear" in p["question"], p  # one BPE id in both places
    target = p["ident"].split(":")[1]
    for i, w in enumerate(items, 1):
        assert f" {i} {w} = {target} ? {'yes' if w == target else 'no'} " in p["solution"], p


def test_training_kinds_keep_equal_shares_and_held_out_problems_stay_distinct():
    from collections import Counter
    train = tp.make_problems(0, "train", 6000)
    shares = Counter(p["ident"].split(":")[0] for p in train)
    assert set(shares.values()) == {1000}, shares  # multiplication (448 training tuples) repeats its tuples
    mul = [p for p in train if p["ident"].startswith("mul:")]
    assert len({p["ident"] for p in mul}) < len(mul)
    assert all(tp.split_of(0, p["ident"]) == "train" for p in train if not p["ident"].startswith("fact:"))
    for split in ("valid", "test"):
        held = tp.make_problems(0, split, 200)
        assert len({p["ident"] for p in held}) == 200, split  # no repeats where they would be scored twice
    assert len({p["key"] for p in train}) == len(train)


def test_table_facts_only_in_training_answered_as_multiplications():
    train = tp.make_problems(0, "train", 6000)
    facts = [p for p in train if p["ident"].startswith("fact:")]
    assert facts and all(p["qtype"] == "multiplication" for p in facts)
    for p in facts:
        x, d, c = (int(v) for v in p["ident"].split(":")[1:])
        assert 0 <= c < max(d, 1) and p["answer"] == str(x * d + c)
        assert p["solution"] == f"{x} x {d} + {c} = {x * d + c}"
        assert f"{x} boxes with {d} " in p["question"] and f"{c} more" in p["question"]
    # every carry a column step can produce for the held-out problems' digits is drilled
    drilled = {tuple(p["ident"].split(":")[1:]) for p in facts}
    assert len(drilled) > 300
    for split in ("valid", "test"):
        assert not any(p["ident"].startswith("fact:") for p in tp.make_problems(0, split, 200)), split


def test_unknown_problem_identity_is_an_error():
    with pytest.raises(ValueError, match="unknown problem identity 'div:6:3'"):
        tp.solve("div:6:3")
