"""Confidence intervals and a rank correlation for the insights, in plain Python (no SciPy).

* :func:`wilson` — a proportion's interval (Wilson score): sound at small n and at 0 or 1,
  where the textbook ``p ± z·√(p(1−p)/n)`` collapses to a point.
* :func:`mean_interval` — a mean's interval with Student's t (exact critical values up to
  30 degrees of freedom, the normal value beyond, which differs by under 2 %).
* :func:`spearman` — Spearman's ρ (ties share their average rank) with a Fisher-z interval.

All intervals are 95 % two-sided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Interval", "mean_interval", "spearman", "t_critical", "wilson"]

Z95 = 1.959964
#: Student's t, two-sided 95 %, for 1..30 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval (``low``/``high`` None when n is too small)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self, digits: int = 4) -> dict[str, float | int | None]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, digits)

        return {"value": r(self.value), "low": r(self.low), "high": r(self.high), "n": self.n}

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share any value (unknown bounds overlap everything)."""
        if None in (self.low, self.high, other.low, other.high):
            return True
        assert self.low is not None and self.high is not None
        assert other.low is not None and other.high is not None
        return self.low <= other.high and other.low <= self.high


def wilson(successes: int, n: int) -> Interval:
    """The share ``successes / n`` and its Wilson score interval."""
    if n <= 0:
        return Interval(None, None, None, 0)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high, n)


def t_critical(df: int) -> float:
    """Two-sided 95 % critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be at least 1")
    return _T95[df - 1] if df <= len(_T95) else Z95


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` and its t interval (no interval for fewer than 2 values)."""
    n = len(values)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, None, None, n)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_critical(n - 1) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, n)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> Interval:
    """Spearman's rank correlation of paired values, with a Fisher-z 95 % interval
    (standard error 1.06 / √(n − 3), as for ranks); no interval below 4 pairs."""
    n = len(xs)
    if n != len(ys):
        raise ValueError("xs and ys must be paired")
    if n < 2:
        return Interval(None, None, None, n)
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return Interval(None, None, None, n)
    rho = sxy / math.sqrt(sxx * syy)
    if n < 4 or abs(rho) >= 1:
        return Interval(rho, None, None, n)
    z, se = math.atanh(rho), 1.06 / math.sqrt(n - 3)
    return Interval(rho, math.tanh(z - Z95 * se), math.tanh(z + Z95 * se), n)
