"""The SQL that turns raw rows into KPI facts: the same statements fill the aggregate tables
(``rollup.py``, per hour or day) and count the rows not rolled up yet (``aggregates.py``:
the hour a ``since`` cuts and the hours after the watermark), so both agree by
construction.

Each builder takes ``source`` (a FROM item giving the raw table as ``d``, ``e`` or ``x``),
``where`` (a condition on it) and ``bucket`` (the SQL of the bucket column). Times are
bucketed in UTC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from return_notify.core.lifecycle import MAIN_LINE, RANK

if TYPE_CHECKING:
    from return_notify.reporting.kpis import ReturnScope

#: milestones whose event completes a return (the KPI's definition, ``kpis.COMPLETED``)
COMPLETED = ("refund_processed", "return_completed")
DISPOSITIONS = ("notified", "stale", "repeat", "no_channel")

DELIVERY_COLUMNS = ("bucket", "tenant_id", "channel", "provider", "region", "milestone", "state",
                    "n", "n_sent", "n_delivered", "n_bounced", "n_read", "min_sent_at",
                    "max_sent_at")
LATENCY_COLUMNS = ("bucket", "tenant_id", "channel", "kind", "lo_ms", "hi_ms", "n", "sum_s")
SCOPED_DELIVERY_COLUMNS = (*DELIVERY_COLUMNS[:5], "category", *DELIVERY_COLUMNS[5:])
SCOPED_LATENCY_COLUMNS = (*LATENCY_COLUMNS[:2], "region", "category", *LATENCY_COLUMNS[2:])
SCOPED_SENT_COLUMNS = ("bucket", "sent_hour", "tenant_id", "region", "category", "n")
EVENT_HOUR_COLUMNS = ("tenant_id", "bucket", "n", "n_notified", "n_stale", "n_repeat",
                      "n_no_channel", "peak_minute_n", "peak_minute_at", "min_at", "max_at")
SCOPED_EVENT_HOUR_COLUMNS = (EVENT_HOUR_COLUMNS[0], "region_key", "category_key",
                             *EVENT_HOUR_COLUMNS[1:])
RETURN_COLUMNS = ("return_pk", "tenant_id", "initiated_at", "last_initiated_at", "max_rank",
                  "completed", "rejected", "cancelled")


def hour_of(col: str) -> str:
    return f"date_trunc('hour', {col}, 'UTC')"


def delivery_facts(source: str, where: str, bucket: str, scoped: bool = False) -> str:
    """Deliveries counted by tenant, channel, provider, the return's region (``scoped``:
    and product category), milestone and state: how many, how many sent / delivered /
    bounced / read, first and last sent."""
    cat, n = ("r.product_category AS category, ", 8) if scoped else ("", 7)
    return f"""
SELECT {bucket} AS bucket, d.tenant_id, d.channel, d.provider, r.region, {cat}d.milestone, d.state,
       count(*) AS n, count(d.sent_at) AS n_sent, count(d.delivered_at) AS n_delivered,
       count(*) FILTER (WHERE d.state = 'failed' AND d.last_error LIKE 'bounced:%')
           AS n_bounced,
       count(i.read_at) AS n_read, min(d.sent_at) AS min_sent_at, max(d.sent_at) AS max_sent_at
FROM {source}
JOIN returns r ON r.id = d.return_pk
LEFT JOIN inbox_items i ON i.delivery_id = d.id
WHERE {where}
GROUP BY {", ".join(str(i) for i in range(1, n + 1))}"""


def latency_facts(source: str, where: str, bucket: str, scoped: bool = False) -> str:
    """occurred_at → sent_at (kind ``s``) and → delivered_at (``d``): count and sum per
    latency bucket (``rsn_latency_bucket``), tenant and channel (``scoped``: and the
    return's region and product category, the return as ``r``)."""
    dims, join, n = (("r.region, r.product_category AS category, ",
                      "JOIN returns r ON r.id = d.return_pk", 8) if scoped else ("", "", 6))
    return f"""
SELECT {bucket} AS bucket, d.tenant_id, {dims}d.channel, k.kind, b.lo_ms, b.hi_ms,
       count(*) AS n, sum(k.s) AS sum_s
FROM {source} {join}
CROSS JOIN LATERAL (VALUES ('s', extract(epoch FROM d.sent_at - d.occurred_at)),
                           ('d', extract(epoch FROM d.delivered_at - d.occurred_at))) k(kind, s)
CROSS JOIN LATERAL rsn_latency_bucket(k.s) b
WHERE k.s IS NOT NULL AND ({where})
GROUP BY {", ".join(str(i) for i in range(1, n + 1))}"""


def sent_facts(source: str, where: str, bucket: str) -> str:
    """Notifications sent, by created bucket and hour sent, per tenant and (tenant 0) all."""
    return f"""
SELECT bucket, sent_hour, coalesce(tenant_id, 0) AS tenant_id, count(*) AS n
FROM (SELECT {bucket} AS bucket, {hour_of('d.sent_at')} AS sent_hour, d.tenant_id
      FROM {source} WHERE d.sent_at IS NOT NULL AND ({where})) s
GROUP BY GROUPING SETS ((bucket, sent_hour, tenant_id), (bucket, sent_hour))"""


def scoped_sent_facts(source: str, where: str, bucket: str) -> str:
    """Notifications sent, by created bucket and hour sent, per tenant and the return's
    region and product category (the return as ``r``)."""
    return f"""
SELECT {bucket} AS bucket, {hour_of('d.sent_at')} AS sent_hour, d.tenant_id, r.region,
       r.product_category AS category, count(*) AS n
FROM {source} JOIN returns r ON r.id = d.return_pk
WHERE d.sent_at IS NOT NULL AND ({where})
GROUP BY 1, 2, 3, 4, 5"""


def scope_condition(region: str, category: str, scope: ReturnScope | None,
                    p: dict[str, Any]) -> str:
    """``region``/``category`` (SQL of a return's region and product category) lie in
    ``scope``: a scope region covers its sub-regions; a return without a region or
    category is outside any such limit (as ``kpis._filters``)."""
    conds = ["TRUE"]
    if scope and scope.regions:  # one plain test per region: no subquery per row
        tests = []
        for i, r in enumerate(scope.regions):
            p[f"scope_r{i}"], p[f"scope_r{i}_sub"] = r, r + "-"
            tests.append(f"upper({region}) = :scope_r{i} "
                         f"OR starts_with(upper({region}), :scope_r{i}_sub)")
        conds.append("(" + " OR ".join(tests) + ")")
    if scope and scope.categories:
        p["scope_categories"] = list(scope.categories)
        conds.append(f"lower({category}) = ANY(CAST(:scope_categories AS text[]))")
    return " AND ".join(conds)


def scope_keys(scope: ReturnScope) -> list[tuple[str, str]]:
    """The disjoint (region key, category key) pairs whose ``stats_scope_event_hours`` rows
    add up to ``scope`` (``*``: any): a region covered by another one of the scope adds
    nothing."""
    regions = sorted({r for r in scope.regions
                      if not any(r != o and r.startswith(o + "-") for o in scope.regions)})
    categories = sorted(set(scope.categories))
    return [(r, c) for r in regions or ["*"] for c in categories or ["*"]]


def scoped_event_hour_facts(source: str, where: str) -> str:
    """``event_hour_facts`` per scope key (``rsn_scope_keys``: every region a scope may name
    that covers the return's, and its category, each or ``*``), the return as ``r``."""
    disp = ", ".join(f"count(*) FILTER (WHERE disposition = '{d}') AS n_{d}"
                     for d in DISPOSITIONS)
    return f"""
WITH ev AS (
    SELECT e.tenant_id, k.region_key AS rk, k.category_key AS ck, e.received_at,
           e.disposition, {hour_of('e.received_at')} AS h,
           date_trunc('minute', e.received_at, 'UTC') AS mi
    FROM {source} JOIN returns r ON r.id = e.return_pk
    CROSS JOIN LATERAL rsn_scope_keys(r.region, r.product_category) k
    WHERE {where}
), per_minute AS (
    SELECT coalesce(tenant_id, 0) AS tid, rk, ck, h, mi, count(*) AS n FROM ev
    GROUP BY GROUPING SETS ((tenant_id, rk, ck, h, mi), (rk, ck, h, mi))
), peak AS (
    SELECT DISTINCT ON (tid, rk, ck, h) tid, rk, ck, h, n, mi FROM per_minute
    ORDER BY tid, rk, ck, h, n DESC, mi
), per_hour AS (
    SELECT coalesce(tenant_id, 0) AS tid, rk, ck, h, count(*) AS n, {disp},
           min(received_at) AS min_at, max(received_at) AS max_at
    FROM ev GROUP BY GROUPING SETS ((tenant_id, rk, ck, h), (rk, ck, h))
)
SELECT a.tid AS tenant_id, a.rk AS region_key, a.ck AS category_key, a.h AS bucket, a.n,
       a.n_notified, a.n_stale, a.n_repeat, a.n_no_channel, p.n AS peak_minute_n,
       p.mi AS peak_minute_at, a.min_at, a.max_at
FROM per_hour a JOIN peak p ON p.tid = a.tid AND p.rk = a.rk AND p.ck = a.ck AND p.h = a.h"""


def event_hour_facts(source: str, where: str) -> str:
    """Events received per hour, per tenant and (tenant 0) all: count, per disposition,
    the busiest minute (earliest of equals) and the first and last received."""
    disp = ", ".join(f"count(*) FILTER (WHERE disposition = '{d}') AS n_{d}"
                     for d in DISPOSITIONS)
    return f"""
WITH ev AS (
    SELECT e.tenant_id, e.received_at, e.disposition, {hour_of('e.received_at')} AS h,
           date_trunc('minute', e.received_at, 'UTC') AS mi
    FROM {source} WHERE {where}
), per_minute AS (
    SELECT coalesce(tenant_id, 0) AS tid, h, mi, count(*) AS n FROM ev
    GROUP BY GROUPING SETS ((tenant_id, h, mi), (h, mi))
), peak AS (
    SELECT DISTINCT ON (tid, h) tid, h, n, mi FROM per_minute ORDER BY tid, h, n DESC, mi
), per_hour AS (
    SELECT coalesce(tenant_id, 0) AS tid, h, count(*) AS n, {disp},
           min(received_at) AS min_at, max(received_at) AS max_at
    FROM ev GROUP BY GROUPING SETS ((tenant_id, h), (h))
)
SELECT a.tid AS tenant_id, a.h AS bucket, a.n, a.n_notified, a.n_stale, a.n_repeat,
       a.n_no_channel, p.n AS peak_minute_n, p.mi AS peak_minute_at, a.min_at, a.max_at
FROM per_hour a JOIN peak p ON p.tid = a.tid AND p.h = a.h"""


def rejected_facts(source: str, where: str) -> str:
    return f"""
SELECT {hour_of('x.received_at')} AS bucket, x.tenant, count(*) AS n
FROM {source} WHERE {where} GROUP BY 1, 2"""


#: the main-line milestones and their ranks, as the ``:ms``/``:ranks`` parameters
RANK_PARAMS = {"ms": [m.value for m in MAIN_LINE], "ranks": [RANK[m] for m in MAIN_LINE]}


def return_facts(source: str, where: str) -> str:
    """Per return, what the given events show: its earliest and latest return_initiated,
    the highest main-line rank and whether it completed, was rejected or cancelled. All
    monotone, so summaries of different events merge (``merge_returns``)."""
    done = ", ".join(f"'{m}'" for m in COMPLETED)
    return f"""
SELECT e.return_pk, min(e.tenant_id) AS tenant_id,
       min(e.occurred_at) FILTER (WHERE e.milestone = 'return_initiated') AS initiated_at,
       max(e.occurred_at) FILTER (WHERE e.milestone = 'return_initiated') AS last_initiated_at,
       coalesce(max(rk.rank), 0) AS max_rank,
       bool_or(e.milestone IN ({done})) AS completed,
       bool_or(e.milestone = 'return_rejected') AS rejected,
       bool_or(e.milestone = 'return_cancelled') AS cancelled
FROM {source}
LEFT JOIN unnest(CAST(:ms AS text[]), CAST(:ranks AS int[])) AS rk(m, rank) ON rk.m = e.milestone
WHERE {where}
GROUP BY e.return_pk"""


def merge_returns(stored: str, new: str) -> str:
    """SELECT list merging a stored summary (alias ``stored``) with a new one (``new``)."""
    return (f"{new}.return_pk, coalesce({stored}.tenant_id, {new}.tenant_id) AS tenant_id, "
            f"LEAST({stored}.initiated_at, {new}.initiated_at) AS initiated_at, "
            f"GREATEST({stored}.last_initiated_at, {new}.last_initiated_at) AS last_initiated_at, "
            f"GREATEST({stored}.max_rank, {new}.max_rank) AS max_rank, "
            f"coalesce({stored}.completed, false) OR {new}.completed AS completed, "
            f"coalesce({stored}.rejected, false) OR {new}.rejected AS rejected, "
            f"coalesce({stored}.cancelled, false) OR {new}.cancelled AS cancelled")
