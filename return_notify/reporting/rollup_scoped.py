"""The scoped KPI aggregates (migration 0013): ``rollup.py``'s tables again by the return's
region and product category, rolled in the same transactions from the same raw rows, so
a region- or category-scoped read (``scoped.py``) adds up aggregate rows instead of
counting the scope's raw rows.

A database rolled up before these tables existed fills them on the next rollups, oldest
week first, up to the main watermark (``scope_watermark`` in ``stats_state``); scoped
reads use them once they have caught up (``reads.plan``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection, text

from return_notify.reporting import facts

TABLES = ("stats_scope_deliveries", "stats_scope_latency", "stats_scope_event_hours",
          "stats_scope_sent_hours", "stats_scope_cohorts")
#: as ``rollup._GRAINED``: key columns, measure columns and how they add up
GRAINED = {
    "stats_scope_deliveries": (("tenant_id", "channel", "provider", "region", "category",
                                "milestone", "state"),
                               ("n", "n_sent", "n_delivered", "n_bounced", "n_read",
                                "min_sent_at", "max_sent_at"),
                               ("sum", "sum", "sum", "sum", "sum", "min", "max")),
    "stats_scope_latency": (("tenant_id", "region", "category", "channel", "kind", "lo_ms",
                             "hi_ms"), ("n", "sum_s"), ("sum", "sum")),
}
_D_COLS = ", ".join(facts.SCOPED_DELIVERY_COLUMNS[1:])
_L_COLS = ", ".join(facts.SCOPED_LATENCY_COLUMNS[1:])


def twin(table: str) -> str:
    """The scoped table of an aggregate table (``stats_deliveries``: ``stats_scope_deliveries``)."""
    return table.replace("stats_", "stats_scope_", 1)


def roll_deliveries(conn: Connection, grain: str, buckets: list[datetime], where: str,
                    params: Mapping[str, object], bucket: str) -> None:
    """The delivery and latency rows of ``grain`` for ``buckets`` (``where``: their raw
    rows as ``d``; ``bucket``: the SQL of their bucket)."""
    for table in GRAINED:
        conn.execute(text(f"DELETE FROM {table} WHERE grain = '{grain}' AND bucket = ANY(:b)"),
                     {"b": buckets})
    conn.execute(text(
        f"INSERT INTO stats_scope_deliveries (grain, bucket, {_D_COLS}) SELECT '{grain}', f.* "
        f"FROM ({facts.delivery_facts('deliveries d', where, bucket, scoped=True)}) f"), params)
    conn.execute(text(
        f"INSERT INTO stats_scope_latency (grain, bucket, {_L_COLS}) SELECT '{grain}', f.* "
        f"FROM ({facts.latency_facts('deliveries d', where, bucket, scoped=True)}) f"), params)


def roll_sent(conn: Connection, hours: list[datetime], where: str,
              params: Mapping[str, object]) -> None:
    conn.execute(text("DELETE FROM stats_scope_sent_hours WHERE bucket = ANY(:b)"), {"b": hours})
    conn.execute(text(
        f"INSERT INTO stats_scope_sent_hours ({', '.join(facts.SCOPED_SENT_COLUMNS)}) "
        + facts.scoped_sent_facts("deliveries d", where, facts.hour_of("d.created_at"))),
        params)


def roll_events(conn: Connection, hours: list[datetime], where: str,
                params: Mapping[str, object]) -> None:
    conn.execute(text("DELETE FROM stats_scope_event_hours WHERE bucket = ANY(:b)"),
                 {"b": hours})
    conn.execute(text(
        f"INSERT INTO stats_scope_event_hours ({', '.join(facts.SCOPED_EVENT_HOUR_COLUMNS)}) "
        + facts.scoped_event_hour_facts("events e", where)), params)


def recount_cohorts(conn: Connection, days: list[datetime] | None) -> None:
    """``stats_scope_cohorts`` of ``days`` (None: every day) from the return summaries."""
    if days is None:
        conn.execute(text("DELETE FROM stats_scope_cohorts"))
        source = ("(SELECT DISTINCT date_trunc('day', initiated_at, 'UTC') AS at "
                  "FROM stats_returns WHERE initiated_at IS NOT NULL) u")
        params: Mapping[str, object] = {}
    else:
        conn.execute(text("DELETE FROM stats_scope_cohorts WHERE day = ANY(:b)"), {"b": days})
        source = "unnest(CAST(:b AS timestamptz[])) AS u(at)"
        params = {"b": days}
    conn.execute(text(
        "INSERT INTO stats_scope_cohorts (day, tenant_id, region, category, max_rank, "
        "completed, rejected, cancelled, n) SELECT u.at, s.tenant_id, r.region, "
        "r.product_category, s.max_rank, s.completed, s.rejected, s.cancelled, count(*) "
        f"FROM {source} JOIN stats_returns s ON s.initiated_at >= u.at "
        "AND s.initiated_at < u.at + interval '24 hours' JOIN returns r ON r.id = s.return_pk "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"), params)
