"""Which rows answer a ``since`` window: aggregate rows of the coarsest grain that fits,
and raw rows for what no aggregate covers (the hour ``since`` cuts, and everything from
the rollup's watermark on).

For ``[since, now)`` with watermark ``W`` (an hour): month rows from the first whole month
(the current month's row covers up to ``W``), day rows for the whole days before it, hour
rows for the whole hours before those, raw rows for ``[since, first whole hour)`` and for
``[W, now)``. Without ``since``: every month row, and the raw rows from ``W``. Hour rows
older than ``RSN_STATS_HOURLY_DAYS`` are gone: the partial first day is then read raw; so
are day rows older than ``RSN_STATS_DAILY_MONTHS``: the partial first month is then read
raw (what is left of it: a month dropped with ``RSN_HISTORY_MONTHS`` counts as empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def _ceil(at: datetime, unit: str) -> datetime:
    at = at.astimezone(UTC)
    if unit == "hour":
        floor = at.replace(minute=0, second=0, microsecond=0)
        return floor if floor == at else floor + timedelta(hours=1)
    if unit == "day":
        floor = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return floor if floor == at else floor + timedelta(days=1)
    floor = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if floor == at:
        return floor
    return floor.replace(year=floor.year + floor.month // 12, month=floor.month % 12 + 1)


@dataclass(frozen=True)
class Window:
    since: datetime | None
    watermark: datetime
    #: the oldest hour with hour rows (None: none kept)
    hourly_since: datetime | None = None
    #: the oldest day with day rows (None: every day's kept)
    daily_since: datetime | None = None

    def _edges(self) -> tuple[datetime, datetime, datetime, bool]:
        assert self.since is not None
        h1, d1, m1 = (_ceil(self.since, u) for u in ("hour", "day", "month"))
        hours_kept = self.hourly_since is not None and h1 >= self.hourly_since
        return h1, d1, m1, hours_kept

    def _days_kept(self, d1: datetime) -> bool:
        return self.daily_since is None or d1 >= self.daily_since

    def grained(self, p: dict[str, Any]) -> str:
        """Condition on ``stats_deliveries``/``stats_latency`` rows (``grain``, ``bucket``)."""
        if self.since is None:
            return "grain = 'm'"
        if self.since >= self.watermark:
            return "FALSE"
        h1, d1, m1, hours_kept = self._edges()
        p.update(w_h1=h1, w_d1=d1, w_m1=m1)
        if not self._days_kept(d1):
            return "(grain = 'm' AND bucket >= :w_m1)"
        cond = ("(grain = 'm' AND bucket >= :w_m1) "
                "OR (grain = 'd' AND bucket >= :w_d1 AND bucket < :w_m1)")
        if hours_kept:
            cond += " OR (grain = 'h' AND bucket >= :w_h1 AND bucket < :w_d1)"
        return f"({cond})"

    def hourly(self, p: dict[str, Any]) -> str:
        """Condition on the rows of the hour-only aggregates (``bucket``)."""
        if self.since is None:
            return "TRUE"
        if self.since >= self.watermark:
            return "FALSE"
        p["w_h1"] = _ceil(self.since, "hour")
        return "bucket >= :w_h1"

    def raw(self, col: str, p: dict[str, Any], grained: bool = True) -> str:
        """Condition on raw rows (``col`` their time): what the aggregate rows selected by
        ``grained()`` (or, with ``grained=False``, ``hourly()``) do not cover."""
        p["w_wm"] = self.watermark
        tail = f"{col} >= :w_wm"
        if self.since is None:
            return tail
        p["w_since"] = self.since
        if self.since >= self.watermark:
            return f"{col} >= :w_since"
        h1, d1, m1, hours_kept = self._edges()
        edge = h1
        if grained and not self._days_kept(d1):
            edge = m1  # no day rows: the first partial month from the raw rows
        elif grained and not hours_kept:
            edge = d1
        p["w_edge"] = min(edge, self.watermark)
        return f"(({col} >= :w_since AND {col} < :w_edge) OR {tail})"

    def day_edge(self) -> datetime | None:
        """The first whole UTC day of the window (None: no ``since``)."""
        return _ceil(self.since, "day") if self.since is not None else None
