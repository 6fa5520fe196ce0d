"""The intervals of the insights against values worked out by hand or published tables."""

from __future__ import annotations

import pytest

from return_notify.reporting.intervals import (
    Interval,
    mean_interval,
    spearman,
    t_critical,
    wilson,
)


def test_wilson_matches_the_published_example_and_stays_inside_zero_and_one() -> None:
    # Newcombe (1998), example: 81 of 263 → 0.3080 (0.2553 to 0.3662)
    w = wilson(81, 263)
    assert (round(w.low or 0, 4), round(w.high or 0, 4)) == (0.2553, 0.3662)
    zero, full = wilson(0, 10), wilson(10, 10)
    assert zero.low == 0 and 0 < (zero.high or 0) < 0.35
    assert full.high == 1 and 0.65 < (full.low or 0) < 1
    assert wilson(0, 0) == Interval(None, None, None, 0)


def test_mean_interval_uses_students_t() -> None:
    m = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd 1.5811, se 0.7071, t(4) = 2.776
    assert m.value == 3 and m.low == pytest.approx(3 - 2.776 * 0.70711, abs=1e-4)
    assert mean_interval([4.0]).low is None and mean_interval([]).value is None
    assert t_critical(1) == 12.706 and t_critical(30) == 2.042 and t_critical(500) == 1.959964
    with pytest.raises(ValueError):
        t_critical(0)


def test_spearman_ranks_ties_and_signs() -> None:
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]).value == pytest.approx(-1)
    # ties share their average rank: x ranks 1, 2.5, 2.5, 4
    rho = spearman([1, 2, 2, 3], [1, 2, 3, 4])
    assert rho.value == pytest.approx(0.9487, abs=1e-4)
    monotone = spearman(list(range(50)), [x * x for x in range(50)])
    assert monotone.value == pytest.approx(1)
    noisy = spearman(list(range(40)), [(x * 7) % 11 for x in range(40)])
    assert noisy.low is not None and noisy.low < (noisy.value or 0) < (noisy.high or 0)
    assert spearman([1, 1, 1], [1, 2, 3]).value is None  # no variation: undefined
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_overlap() -> None:
    a, b, c = Interval(1, 0.5, 1.5, 9), Interval(2, 1.4, 2.6, 9), Interval(3, 2.5, 3.3, 9)
    assert a.overlaps(b) and b.overlaps(c) and not a.overlaps(c) and not c.overlaps(a)
    assert Interval(1, None, None, 1).overlaps(c)
