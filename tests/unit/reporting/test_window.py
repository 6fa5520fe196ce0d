"""Which rows answer a window (aggregate grains and raw ranges) and latency percentiles
from histogram buckets: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from return_notify.reporting.aggregates import latency_histogram, percentile
from return_notify.reporting.window import Window

WM = datetime(2026, 3, 18, 15, tzinfo=UTC)  # the rollup's watermark
HOURLY = datetime(2026, 2, 11, tzinfo=UTC)  # hour rows kept from here


def test_without_since_every_month_row_and_the_rows_after_the_watermark() -> None:
    win, p = Window(None, WM, HOURLY), {}
    assert win.grained(p) == "grain = 'm'"
    assert win.raw("t", p) == "t >= :w_wm" and p["w_wm"] == WM


def test_a_since_inside_an_hour_uses_months_days_hours_and_raw_edges() -> None:
    since = datetime(2026, 2, 20, 9, 47, 12, tzinfo=UTC)
    win, p = Window(since, WM, HOURLY), {}
    cond = win.grained(p)
    assert (p["w_m1"], p["w_d1"], p["w_h1"]) == (
        datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 2, 21, tzinfo=UTC),
        datetime(2026, 2, 20, 10, tzinfo=UTC))
    assert "grain = 'h'" in cond
    raw: dict[str, Any] = {}
    win.raw("t", raw)
    assert (raw["w_since"], raw["w_edge"], raw["w_wm"]) == (since, p["w_h1"], WM)


def test_before_the_hour_rows_kept_the_first_day_is_read_raw() -> None:
    since = datetime(2025, 12, 3, 18, 5, tzinfo=UTC)
    win, p = Window(since, WM, HOURLY), {}
    assert "grain = 'h'" not in win.grained(p)
    raw: dict[str, Any] = {}
    win.raw("t", raw)
    assert raw["w_edge"] == datetime(2025, 12, 4, tzinfo=UTC)
    # the hour-only aggregates still answer from the first whole hour
    hourly: dict[str, Any] = {}
    win.raw("t", hourly, grained=False)
    assert hourly["w_edge"] == datetime(2025, 12, 3, 19, tzinfo=UTC)


def test_before_the_day_rows_kept_the_first_month_is_read_raw() -> None:
    daily = datetime(2025, 10, 1, tzinfo=UTC)
    since = datetime(2025, 8, 17, 6, tzinfo=UTC)
    win, p = Window(since, WM, HOURLY, daily), {}
    assert win.grained(p) == "(grain = 'm' AND bucket >= :w_m1)"
    assert p["w_m1"] == datetime(2025, 9, 1, tzinfo=UTC)
    raw: dict[str, Any] = {}
    win.raw("t", raw)
    assert raw["w_edge"] == datetime(2025, 9, 1, tzinfo=UTC)
    # from the first day kept on, day rows answer as before
    kept, q = Window(daily + timedelta(hours=5), WM, HOURLY, daily), {}
    assert "grain = 'd'" in kept.grained(q)
    edge: dict[str, Any] = {}
    kept.raw("t", edge)
    assert edge["w_edge"] == daily + timedelta(days=1)


def test_a_since_after_the_watermark_reads_only_raw_rows() -> None:
    win, p = Window(WM + timedelta(minutes=5), WM, HOURLY), {}
    assert win.grained(p) == "FALSE" and win.hourly(p) == "FALSE"
    assert win.raw("t", p) == "t >= :w_since"


@pytest.mark.parametrize("values", [[1000, 1200, 1300, 4000], list(range(0, 5000, 7))])
def test_a_percentile_from_buckets_is_within_the_bucket_width(values: list[int]) -> None:
    # given: the buckets rsn_latency_bucket gives these millisecond values
    def bucket(ms: int) -> tuple[int, int]:
        step = 1 if ms < 100 else 10 if ms < 1000 else 100
        return ms // step * step, ms // step * step + step
    counts: dict[tuple[int, int], int] = {}
    for v in values:
        counts[bucket(v)] = counts.get(bucket(v), 0) + 1
    hist = sorted((lo, hi, n) for (lo, hi), n in counts.items())
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        pos = q * (len(ordered) - 1)
        k = int(pos)
        exact = ordered[k] + (pos - k) * (ordered[min(k + 1, len(ordered) - 1)] - ordered[k])
        assert percentile(hist, q) == pytest.approx(exact / 1000, rel=0.1, abs=0.01)
    assert percentile([], 0.5) is None


def test_the_latency_histogram_adds_fine_buckets_into_the_report_edges() -> None:
    rows = [{"kind": "s", "lo_ms": lo, "hi_ms": hi, "n": n} for lo, hi, n in
            ((-4, -3, 1), (0, 1, 2), (240, 250, 3), (250, 260, 4), (86400000, 86500000, 5))]
    rows.append({"kind": "d", "lo_ms": 250, "hi_ms": 260, "n": 99})
    counts = latency_histogram(rows)["counts"]
    assert counts[0] == 1 + 2 + 3 and counts[1] == 4 and counts[-1] == 5 and sum(counts) == 15
