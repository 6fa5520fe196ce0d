"""Keep the KPI aggregates up to date: beat runs ``rollup`` every
``RSN_STATS_ROLLUP_INTERVAL_S``, outside the ingest and deliver paths.

The **watermark** is the hour up to which everything is rolled up. Each run rolls the hours
from the watermark to the current hour (the first run, every hour since the oldest row, a
week per transaction) and re-rolls the older hours whose rows changed since: a statement
trigger on ``deliveries``, ``events``, ``rejected_events`` and ``inbox_items`` marks the
hours it touched in ``stats_dirty`` (one small insert per statement, whatever its row
count), so a webhook's "delivered" for last week's e-mail reaches the aggregates on the
next run. A mark is taken (deleted) in the transaction that re-rolls its hour; a mark
written by a transaction that commits later stays for the next run.

Grains: ``stats_deliveries`` and ``stats_latency`` have hour rows (kept
``RSN_STATS_HOURLY_DAYS``), day rows (from the hour rows, or from the raw rows for a day
older than that; kept ``RSN_STATS_DAILY_MONTHS`` whole months before the current one, 0:
for good) and month rows (from the day rows, kept for good); the current day's and month's
rows cover up to the watermark. A change to an hour whose day rows are gone re-rolls its
whole month from the raw rows (the month row is the sum of its days), and the day rows go
again. Events, sends by hour and rejected
events are kept per hour only (a few rows per hour). Return summaries are merged, never
recomputed from every event, so a return keeps its cohort and funnel numbers after the
partitions holding its first events are dropped.

Each table again by the return's region and product category (``rollup_scoped.py``, for
scoped KPIs): the delivery, latency and send rows are rolled up scoped first and the plain
rows summed from them, so the raw deliveries are read once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from return_notify.reporting import facts
from return_notify.reporting import rollup_scoped as scoped

log = logging.getLogger(__name__)

_LOCK_KEY = 0x52534E53  # "RSNS": one rollup at a time
CHUNK = timedelta(days=7)
MARKS_PER_RUN = 168  # changed hours re-rolled per transaction
ANALYZE_AFTER_HOURS = 72
_TABLES = ("stats_deliveries", "stats_latency", "stats_event_hours", "stats_sent_hours",
           "stats_rejected_hours", "stats_returns", "stats_cohorts", *scoped.TABLES)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)

#: per aggregate table with grains: its key columns, measure columns and how they add up
_GRAINED = {
    "stats_deliveries": (("tenant_id", "channel", "provider", "region", "milestone", "state"),
                         ("n", "n_sent", "n_delivered", "n_bounced", "n_read", "min_sent_at",
                          "max_sent_at"),
                         ("sum", "sum", "sum", "sum", "sum", "min", "max")),
    "stats_latency": (("tenant_id", "channel", "kind", "lo_ms", "hi_ms"), ("n", "sum_s"),
                      ("sum", "sum")),
}
#: one UTC day or month after the timestamptz expression (DST-proof whatever the session)
_NEXT = {"day": "({at} + interval '24 hours')",
         "month": "(({at} AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'"}


@dataclass
class RollupResult:
    hours: int = 0
    days: int = 0
    months: int = 0
    returns: int = 0
    watermark: str | None = None
    seconds: float = 0.0
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state(conn: Connection, name: str) -> datetime | None:
    return conn.execute(text("SELECT at FROM stats_state WHERE name = :n"), {"n": name}).scalar()


def _set_state(conn: Connection, name: str, at: datetime) -> None:
    conn.execute(text("INSERT INTO stats_state (name, at) VALUES (:n, :at) "
                      "ON CONFLICT (name) DO UPDATE SET at = EXCLUDED.at"), {"n": name, "at": at})


def watermark(conn: Connection) -> datetime | None:
    """Every hour before it is rolled up (None: never rolled up)."""
    return _state(conn, "watermark")


def _floor(at: datetime, unit: str) -> datetime:
    at = at.astimezone(UTC)
    if unit == "month":
        return datetime(at.year, at.month, 1, tzinfo=UTC)
    if unit == "day":
        return datetime(at.year, at.month, at.day, tzinfo=UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _oldest_hour(conn: Connection) -> datetime | None:
    found = [t for t in conn.execute(text(
        "SELECT (SELECT min(created_at) FROM deliveries), (SELECT min(received_at) FROM events), "
        "(SELECT min(received_at) FROM rejected_events)")).one() if t is not None]
    return _floor(min(found), "hour") if found else None


def rollup(conn: Connection, *, hourly_days: int = 35, daily_months: int = 0,
           now: datetime | None = None, budget_s: float | None = None) -> RollupResult:
    """Roll up to the current hour; ``conn`` must not be in a transaction. With
    ``budget_s``, stop after the chunk that used it up (the next run goes on). Day rows
    older than ``daily_months`` whole months before the current one go (0: none)."""
    t0 = time.monotonic()
    result = RollupResult()
    if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        conn.commit()
        return RollupResult(skipped=True)
    conn.commit()
    try:
        now = now or conn.execute(text("SELECT now()")).scalar_one()
        conn.commit()
        w_new = _floor(now, "hour")
        # hour rows exist for every hour since hourly_from (never earlier than the day
        # they started to be kept: a larger RSN_STATS_HOURLY_DAYS takes effect as time goes)
        kept = _state(conn, "hourly_since")
        hourly_from = _floor(w_new - timedelta(days=hourly_days), "day")
        rolled = watermark(conn)
        w = rolled or _oldest_hour(conn) or w_new
        hourly_from = max(hourly_from, kept or _floor(w, "day"))
        daily_from = _months_before(w_new, daily_months) if daily_months else None
        days_gone = _state(conn, "daily_since")  # no day rows before it
        # the scoped aggregates: with the others from the start, or (a database rolled up
        # before they existed) filled from the oldest raw row up to the watermark
        sw = _state(conn, "scope_watermark")
        if sw is None:
            sw = (_oldest_hour(conn) or w) if rolled else w
            if rolled:
                scoped.recount_cohorts(conn, None)
            _set_state(conn, "scope_watermark", sw)
        conn.commit()
        while budget_s is None or time.monotonic() - t0 < budget_s:
            with conn.begin():
                conn.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves
                # first the hours before the watermark whose rows changed, oldest first,
                # a week of them per transaction; then the next week after the watermark
                old = [h for (h,) in conn.execute(text(
                    "SELECT DISTINCT hour FROM stats_dirty WHERE hour < :w ORDER BY hour "
                    "LIMIT :n"), {"w": w, "n": MARKS_PER_RUN})]
                if old:
                    _roll(conn, [], _take_marks(conn, "hour = ANY(:h)", {"h": old}),
                          hourly_from, result, days_gone=days_gone)
                elif w < w_new:
                    end = min(w + CHUNK, w_new)
                    new = [w + i * HOUR for i in range(int((end - w) / HOUR))]
                    marked = _take_marks(conn, "hour >= :lo AND hour < :hi", {"lo": w, "hi": end})
                    _roll(conn, new, marked, hourly_from, result, days_gone=days_gone)
                    _set_state(conn, "watermark", end)
                    if sw >= w:
                        sw = max(sw, end)
                        _set_state(conn, "scope_watermark", sw)
                    w = end
                elif sw < w:  # catching up: the scoped aggregates only
                    end = min(sw + CHUNK, w)
                    new = [sw + i * HOUR for i in range(int((end - sw) / HOUR))]
                    _roll(conn, new, {"d": set(), "e": set(), "r": set()}, hourly_from, result,
                          plain=False)
                    _set_state(conn, "scope_watermark", end)
                    sw = end
                else:
                    break
        result.watermark = w.isoformat()
        with conn.begin():
            for table in ("stats_deliveries", "stats_latency", *scoped.GRAINED):
                conn.execute(text(f"DELETE FROM {table} WHERE grain = 'h' AND bucket < :at"),
                             {"at": hourly_from})
            # day rows of whole months before daily_from, and only of months rolled up
            # completely (a run that stopped mid-month continues from that month's days)
            # (and those a re-roll of a changed hour brought back)
            cut = min(daily_from, _floor(min(w, sw), "month")) if daily_from else days_gone
            if cut is not None:
                for table in ("stats_deliveries", "stats_latency", *scoped.GRAINED):
                    conn.execute(text(f"DELETE FROM {table} WHERE grain = 'd' "
                                      "AND bucket < :at"), {"at": cut})
                _set_state(conn, "daily_since", max(cut, days_gone or cut))
            _set_state(conn, "hourly_since", hourly_from)
        if result.hours > ANALYZE_AFTER_HOURS:  # a backfill: row counts for the planner,
            # and the rows it rewrote week after week (a month's, each week) vacuumed away
            with conn.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as auto:
                for table in _TABLES:
                    auto.execute(text(f"VACUUM (ANALYZE) {table}"))
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _months_before(at: datetime, months: int) -> datetime:
    """The first day of the month ``months`` whole months before ``at``'s."""
    index = at.year * 12 + at.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _take_marks(conn: Connection, where: str, params: dict[str, Any]
                ) -> dict[str, set[datetime]]:
    """Delete the change marks matching ``where`` and return their hours by kind (a mark
    written by a transaction that commits later is not seen, so it stays)."""
    marked: dict[str, set[datetime]] = {"d": set(), "e": set(), "r": set()}
    for kind, hour in conn.execute(text(
            f"DELETE FROM stats_dirty WHERE {where} RETURNING kind, hour"), params):
        marked[kind].add(hour)
    return marked


def _roll(conn: Connection, new: list[datetime], marked: dict[str, set[datetime]],
          hourly_from: datetime, result: RollupResult, plain: bool = True,
          days_gone: datetime | None = None) -> None:
    """Roll the ``new`` hours and the ``marked`` ones, in the caller's transaction (not
    ``plain``: the scoped aggregates only; ``days_gone``: no day rows before it)."""
    hours_d = sorted(set(new) | marked["d"])
    hours_e = sorted(set(new) | marked["e"])
    hours_r = sorted(set(new) | marked["r"])
    result.hours += len(set(hours_d) | set(hours_e) | set(hours_r))
    if hours_d:
        _roll_deliveries(conn, hours_d, hourly_from, result, plain, days_gone)
    if hours_e:
        where, params = _in_ranges("e.received_at", hours_e, HOUR)
        scoped.roll_events(conn, hours_e, where, params)
        if not plain:
            return
        _roll_events(conn, hours_e)
        result.returns += _roll_returns(conn, hours_e)
    if hours_r and plain:
        conn.execute(text("DELETE FROM stats_rejected_hours WHERE bucket = ANY(:h)"),
                     {"h": hours_r})
        where, params = _in_ranges("x.received_at", hours_r, HOUR)
        conn.execute(text("INSERT INTO stats_rejected_hours (bucket, tenant, n) "
                          + facts.rejected_facts("rejected_events x", where)), params)


def _runs(starts: list[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Buckets of ``width`` from ``starts``, merged into contiguous [lo, hi) ranges."""
    out: list[tuple[datetime, datetime]] = []
    for s in sorted(set(starts)):
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], s + width)
        else:
            out.append((s, s + width))
    return out


def _in_ranges(col: str, starts: list[datetime], width: timedelta
               ) -> tuple[str, dict[str, datetime]]:
    """A condition ``col`` in the buckets (OR of ranges: index range scans in each
    partition) and its parameters."""
    parts, params = [], {}
    for i, (lo, hi) in enumerate(_runs(starts, width)):
        parts.append(f"({col} >= :lo{i} AND {col} < :hi{i})")
        params[f"lo{i}"], params[f"hi{i}"] = lo, hi
    return "(" + " OR ".join(parts) + ")", params


def _roll_deliveries(conn: Connection, hours: list[datetime], hourly_from: datetime,
                     result: RollupResult, plain: bool = True,
                     days_gone: datetime | None = None) -> None:
    recent = [h for h in hours if h >= hourly_from]
    days = {_floor(h, "day") for h in hours if h < hourly_from}
    if days_gone is not None:  # a day whose day rows are gone: its whole month again
        for month in {_floor(d, "month") for d in days if d < days_gone}:
            days |= set(_days_of(month))
    old_days = sorted(days)
    for grain, buckets, width, trunc in (("h", recent, HOUR, "hour"), ("d", old_days, DAY, "day")):
        if not buckets:  # hour rows; and for a day whose hour rows are gone, its day rows
            continue
        where, params = _in_ranges("d.created_at", buckets, width)
        bucket = f"date_trunc('{trunc}', d.created_at, 'UTC')"
        scoped.roll_deliveries(conn, grain, buckets, where, params, bucket)
        if not plain:
            continue
        # the same raw rows, read once: the scoped rows summed over region and category
        for table, (key, measures, how) in _GRAINED.items():
            cols = ", ".join(key)
            sums = ", ".join(f"{fn}({m})" for m, fn in zip(measures, how, strict=True))
            conn.execute(text(f"DELETE FROM {table} WHERE grain = '{grain}' "
                              "AND bucket = ANY(:b)"), {"b": buckets})
            conn.execute(text(
                f"INSERT INTO {table} (grain, bucket, {cols}, {', '.join(measures)}) "
                f"SELECT grain, bucket, {cols}, {sums} FROM {scoped.twin(table)} "
                f"WHERE grain = '{grain}' AND bucket = ANY(:b) GROUP BY grain, bucket, {cols}"),
                {"b": buckets})
    tables = {**(_GRAINED if plain else {}), **scoped.GRAINED}
    _regrain(conn, "d", "h", "day", sorted({_floor(h, "day") for h in recent}), tables)
    all_days = {_floor(h, "day") for h in hours}
    months = sorted({_floor(d, "month") for d in all_days})
    _regrain(conn, "m", "d", "month", months, tables)
    result.days += len(all_days)
    result.months += len(months)
    where, params = _in_ranges("d.created_at", hours, HOUR)
    scoped.roll_sent(conn, hours, where, params)
    if not plain:
        return
    conn.execute(text("DELETE FROM stats_sent_hours WHERE bucket = ANY(:b)"), {"b": hours})
    conn.execute(text(  # per tenant and (tenant 0) all, from the scoped rows just made
        "INSERT INTO stats_sent_hours (bucket, sent_hour, tenant_id, n) SELECT bucket, "
        "sent_hour, coalesce(tenant_id, 0), sum(n) FROM stats_scope_sent_hours "
        "WHERE bucket = ANY(:b) GROUP BY GROUPING SETS ((bucket, sent_hour, tenant_id), "
        "(bucket, sent_hour))"), {"b": hours})


def _days_of(month: datetime) -> list[datetime]:
    nxt = _months_before(month, -1)
    return [month + i * DAY for i in range((nxt - month) // DAY)]


def _regrain(conn: Connection, grain: str, finer: str, unit: str, buckets: list[datetime],
             tables: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]
             ) -> None:
    """Rows of ``grain`` for ``buckets`` as the sums of their ``finer`` rows."""
    if not buckets:
        return
    for table, (key, measures, how) in tables.items():
        keys = ", ".join(f"s.{k}" for k in key)
        sums = ", ".join(f"{fn}(s.{m})" for m, fn in zip(measures, how, strict=True))
        conn.execute(text(f"DELETE FROM {table} WHERE grain = '{grain}' AND bucket = ANY(:b)"),
                     {"b": buckets})
        conn.execute(text(
            f"INSERT INTO {table} (grain, bucket, {', '.join(key)}, {', '.join(measures)}) "
            f"SELECT '{grain}', u.at, {keys}, {sums} "
            f"FROM unnest(CAST(:b AS timestamptz[])) AS u(at) JOIN {table} s "
            f"ON s.grain = '{finer}' AND s.bucket >= u.at AND s.bucket < "
            f"{_NEXT[unit].format(at='u.at')} GROUP BY u.at, {keys}"), {"b": buckets})


def _roll_events(conn: Connection, hours: list[datetime]) -> None:
    cols = ", ".join(facts.EVENT_HOUR_COLUMNS)
    conn.execute(text("DELETE FROM stats_event_hours WHERE bucket = ANY(:b)"), {"b": hours})
    where, params = _in_ranges("e.received_at", hours, HOUR)
    conn.execute(text(f"INSERT INTO stats_event_hours ({cols}) "
                      + facts.event_hour_facts("events e", where)), params)


def _roll_returns(conn: Connection, hours: list[datetime]) -> int:
    """Merge what the events received in ``hours`` show into their returns' summaries, then
    recount the cohort days those returns were (and now are) in."""
    conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS rsn_touched (LIKE stats_returns) "
                      "ON COMMIT DELETE ROWS"))
    where, params = _in_ranges("e.received_at", hours, HOUR)
    conn.execute(text("INSERT INTO rsn_touched " + facts.return_facts("events e", where)),
                 {**params, **facts.RANK_PARAMS})
    days = {d for (d,) in conn.execute(text(
        "SELECT DISTINCT date_trunc('day', s.initiated_at, 'UTC') FROM stats_returns s "
        "JOIN rsn_touched t USING (return_pk) WHERE s.initiated_at IS NOT NULL"))}
    n = conn.execute(text(
        f"INSERT INTO stats_returns SELECT {facts.merge_returns('s', 't')} FROM rsn_touched t "
        "LEFT JOIN stats_returns s USING (return_pk) ON CONFLICT (return_pk) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in facts.RETURN_COLUMNS[1:])
        + " RETURNING date_trunc('day', initiated_at, 'UTC')")).all()
    days |= {d for (d,) in n if d is not None}
    if days:
        b = sorted(days)
        conn.execute(text("DELETE FROM stats_cohorts WHERE day = ANY(:b)"), {"b": b})
        conn.execute(text(
            "INSERT INTO stats_cohorts (day, tenant_id, max_rank, completed, rejected, cancelled, "
            "n) SELECT u.at, s.tenant_id, s.max_rank, s.completed, s.rejected, s.cancelled, "
            "count(*) FROM unnest(CAST(:b AS timestamptz[])) AS u(at) JOIN stats_returns s "
            "ON s.initiated_at >= u.at AND s.initiated_at < u.at + interval '24 hours' "
            "GROUP BY 1, 2, 3, 4, 5, 6"), {"b": b})
        scoped.recount_cohorts(conn, b)
    return len(n)
