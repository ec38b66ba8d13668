"""McNemar's exact test with both gains and losses, checked against an independent binomial computation
(issue #23, item 10). The older tests used only cases without losses, where the tail is a single term."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from r1lab.stats import mcnemar


def exact_two_sided(gained: int, lost: int) -> float:
    """Two-sided exact binomial p-value under p = 1/2, computed independently: the probability, in exact
    fractions, of every split of the changed problems at most as likely as the one observed."""
    n = gained + lost
    if n == 0:
        return 1.0
    pmf = [Fraction(math.comb(n, k), 2**n) for k in range(n + 1)]
    observed = pmf[gained]
    return float(sum(p for p in pmf if p <= observed))


def paired(gained: int, lost: int, both_right: int = 3, both_wrong: int = 4) -> tuple[list[bool], list[bool]]:
    before = [False] * gained + [True] * lost + [True] * both_right + [False] * both_wrong
    after = [True] * gained + [False] * lost + [True] * both_right + [False] * both_wrong
    return before, after


@pytest.mark.parametrize(
    "gained, lost", [(7, 3), (3, 7), (12, 2), (2, 12), (5, 5), (6, 5), (1, 9), (20, 11), (30, 30), (1, 1)]
)
def test_mcnemar_with_gains_and_losses_matches_the_binomial(gained, lost):
    before, after = paired(gained, lost)
    r = mcnemar(before, after)
    assert (r["gained"], r["lost"], r["n"]) == (gained, lost, len(before))
    assert r["p"] == pytest.approx(exact_two_sided(gained, lost), rel=1e-12, abs=1e-15)


def test_known_values():
    # 7 gained, 3 lost: 2 * (C(10,0) + C(10,1) + C(10,2) + C(10,3)) / 2**10 = 2 * 176 / 1024
    assert mcnemar(*paired(7, 3))["p"] == pytest.approx(352 / 1024)
    # 12 vs 2: 2 * (1 + 14 + 91) / 2**14
    assert mcnemar(*paired(12, 2))["p"] == pytest.approx(212 / 16384)


def test_symmetric_in_gains_and_losses_and_the_order_of_problems():
    for g, lost in itertools.product(range(6), repeat=2):
        before, after = paired(g, lost)
        assert mcnemar(before, after)["p"] == pytest.approx(mcnemar(after, before)["p"])
        perm = list(range(len(before)))[::-1]
        assert (
            mcnemar([before[i] for i in perm], [after[i] for i in perm])["p"] == mcnemar(before, after)["p"]
        )


def test_these_cases_would_catch_a_one_term_or_one_sided_tail():
    """The cases above tell a correct tail from the mistakes a no-loss test cannot see."""
    g, lost = 7, 3
    n = g + lost
    one_term = 2 * math.comb(n, lost) / 2**n
    one_sided = sum(math.comb(n, k) for k in range(lost + 1)) / 2**n
    assert exact_two_sided(g, lost) not in (pytest.approx(one_term), pytest.approx(one_sided))
