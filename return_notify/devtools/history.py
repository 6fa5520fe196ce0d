"""A year of realistic history, generated set-based inside PostgreSQL (``generate_series``):
returns walking their lifecycle, their events, the deliveries the default rules make of
them, the provider attempts, and a few rejected events, spread over 13 months.

``generate_history(rows=N)`` adds about N deliveries (±2 %) to the database at
``database_url`` (default: ``RSN_DATABASE_URL``), one month per transaction, with ids of
the month each row was made in, so they land in the monthly partitions (created as
needed). ``return-notify bench --history N`` calls it; standalone::

    python -m return_notify.devtools.history --rows 1000000 [--database-url URL] [--json]
        [--measure]   # then roll the KPI aggregates up and time the reads (history_reads)

The shape: tenants of different sizes, each with a home region and category; diurnal
load with a seasonal January peak; ~10 events per return (6 % rejected, 4 % cancelled,
12 % stalled mid-way, 3 % carrier exceptions), channels as the default rules choose them
for customers with an e-mail (97 %) and a phone (60 %); providers' outcomes (delivered,
bounced, undelivered, dead after retries, suppressed, skipped) with realistic latencies;
one attempt per provider call; rendered content and personal data of rows older than
``redact_after_days`` already redacted, as the retention purge leaves them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

TENANTS = ("acme-outfitters", "nordhaus", "maison-claire", "tienda-sol", "kiwi-kids",
           "northwind-home", "urban-feet", "lumen-beauty", "cascade-gear", "harbor-books")
REGIONS = ("US", "EU-DE", "EU-FR", "EU-ES", "CA", "UK", "EU-NL", "AU")
CATEGORIES = ("apparel", "home", "beauty", "electronics", "shoes", "toys", "books", "sports")
#: calendar-month weights of returns started (January: the post-holiday peak)
SEASON = (1.5, 1.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.95, 1.0, 1.1, 1.3)
#: deliveries per return, first guess (corrected after each month)
_PER_RETURN = 17.0

_RETURNS = """
CREATE TEMP TABLE g_ret ON COMMIT DROP AS
SELECT nextval('returns_id_seq') AS id, t.tidx, t.tid, t.slug,
       'H' || :tag || '-' || g AS ref, 'hc-' || :tag || '-' || g AS cid,
       (CAST(:regions AS text[]))[1 + (t.tidx + floor(random() * random() * 4)::int)
           % cardinality(CAST(:regions AS text[]))]
           AS region,
       (CAST(:cats AS text[]))[1 + (t.tidx * 3 + floor(random() * random() * 5)::int)
           % cardinality(CAST(:cats AS text[]))]
           AS category,
       random() < 0.97 AS has_email, random() < 0.6 AS has_phone,
       :m_start + (floor(random() * :days) || ' days')::interval
           + ((CASE WHEN random() < 0.15 THEN random() * 24
                    ELSE 6 + (random() + random() + random()) / 3 * 14 END)
              || ' hours')::interval AS start_at,
       random() AS kind, random() AS cut, random() < 0.5 AS two_transit,
       random() < 0.6 AS restocks, random() < 0.03 AS excepted
FROM generate_series(1, :n) g
CROSS JOIN LATERAL (
    SELECT i AS tidx, (CAST(:tids AS int[]))[i + 1] AS tid, (CAST(:slugs AS text[]))[i + 1] AS slug
    FROM (SELECT floor(cardinality(CAST(:tids AS int[])) * power(random() + 0 * g, 1.7))::int AS i) x
) t
"""
_PATHS = """
CREATE TEMP TABLE g_path ON COMMIT DROP AS
SELECT r.*, CASE
    WHEN kind < 0.06 THEN ARRAY['return_initiated', 'return_rejected']
    WHEN kind < 0.10 THEN ARRAY['return_initiated', 'return_approved', 'return_cancelled']
    ELSE (SELECT array_agg(m ORDER BY o) FROM unnest(
          ARRAY['return_initiated', 'return_approved', 'label_created', 'shipment_dispatched']
          || CASE WHEN excepted THEN ARRAY['exception'] ELSE '{}'::text[] END
          || ARRAY['in_transit'] || CASE WHEN two_transit THEN ARRAY['in_transit']
                                        ELSE '{}'::text[] END
          || ARRAY['warehouse_received', 'inspection_completed']
          || CASE WHEN restocks THEN ARRAY['restocked'] ELSE '{}'::text[] END
          || ARRAY['refund_processed', 'return_completed']) WITH ORDINALITY u(m, o)
          WHERE kind >= 0.22 OR o <= 2 + floor(cut * 8))
    END AS path
FROM g_ret r
"""
# mean hours from the previous milestone
_DELAY_H = """CASE u.m WHEN 'return_initiated' THEN 0 WHEN 'return_approved' THEN 3
    WHEN 'label_created' THEN 0.5 WHEN 'shipment_dispatched' THEN 30 WHEN 'exception' THEN 20
    WHEN 'in_transit' THEN 20 WHEN 'warehouse_received' THEN 60 WHEN 'inspection_completed'
    THEN 20 WHEN 'restocked' THEN 8 WHEN 'refund_processed' THEN 10 WHEN 'return_completed'
    THEN 2 WHEN 'return_rejected' THEN 5 ELSE 12 END"""
_EVENTS = f"""
CREATE TEMP TABLE g_ev ON COMMIT DROP AS
SELECT rsn_month_id(nextval('events_id_seq'), received_at) AS id, x.*
FROM (
    SELECT y.*, y.occurred_at + (0.2 + random() * 4) * interval '1 second' AS received_at
    FROM (
        SELECT p.id AS rpk, p.tid, p.slug, p.ref, p.cid, p.region, p.category, p.has_email,
               p.has_phone, u.m, u.o,
               p.start_at + sum({_DELAY_H} * (0.3 + 1.4 * random())) OVER w
                   * interval '1 hour' AS occurred_at
        FROM g_path p, unnest(p.path) WITH ORDINALITY u(m, o)
        WINDOW w AS (PARTITION BY p.id ORDER BY u.o)
    ) y
) x
WHERE x.received_at < :end_at
"""
_INSERT_RETURNS = """
INSERT INTO returns (id, tenant_id, return_id, milestone, milestone_rank, milestone_at,
                     customer_id, region, product_category, created_at, updated_at)
SELECT p.id, p.tid, p.ref, l.m, l.rank, l.occurred_at, p.cid, p.region, p.category,
       f.first_at, l.received_at
FROM g_path p
JOIN (SELECT rpk, min(received_at) AS first_at FROM g_ev GROUP BY rpk) f ON f.rpk = p.id
JOIN (
    SELECT DISTINCT ON (e.rpk) e.rpk, e.m, e.occurred_at, e.received_at,
           CASE WHEN e.m IN ('return_completed', 'return_rejected', 'return_cancelled') THEN 100
                ELSE 10 * array_position(ARRAY['return_initiated', 'return_approved',
                    'label_created', 'shipment_dispatched', 'in_transit', 'warehouse_received',
                    'inspection_completed', 'restocked', 'refund_processed'], e.m) END AS rank
    FROM g_ev e WHERE e.m <> 'exception' ORDER BY e.rpk, e.o DESC
) l ON l.rpk = p.id
"""
_INSERT_EVENTS = """
INSERT INTO events (id, tenant_id, event_id, return_pk, milestone, occurred_at, received_at,
                    disposition, reason, source, payload)
SELECT e.id, e.tid, e.ref || '-' || e.o, e.rpk, e.m, e.occurred_at, e.received_at, 'notified',
       'history', CASE WHEN e.m IN ('in_transit', 'exception') THEN 'carrier:ups' ELSE 'wms' END,
       jsonb_build_object('schema_version', 1, 'event_id', e.ref || '-' || e.o, 'tenant', e.slug,
           'return_id', e.ref, 'milestone', e.m, 'occurred_at', e.occurred_at,
           'customer', CASE WHEN e.received_at < :redact_before
               THEN jsonb_build_object('id', e.cid, 'locale', 'en-US')
               ELSE jsonb_strip_nulls(jsonb_build_object('id', e.cid, 'name', 'Ana',
                   'email', CASE WHEN e.has_email THEN e.cid || '@example.com' END,
                   'phone', CASE WHEN e.has_phone THEN '+1415555' || lpad((e.rpk % 10000)::text,
                   4, '0') END, 'locale', 'en-US')) END,
           'region', e.region, 'product_category', e.category,
           'data', jsonb_build_object('carrier', 'ups', 'tracking_number', '1Z' || e.rpk,
               'tracking_url', 'https://track.example.com/ups/1Z' || e.rpk),
           'source', 'wms')
FROM g_ev e;
INSERT INTO event_keys (tenant_id, event_id) SELECT tid, ref || '-' || o FROM g_ev;
"""
# channels of the default rules (config/rules.py), for the customers they can reach
_CHANNELS = """CASE e.m WHEN 'in_transit' THEN ARRAY['sms', 'inapp']
    WHEN 'restocked' THEN ARRAY['inapp']
    WHEN 'label_created' THEN ARRAY['email', 'sms', 'inapp']
    WHEN 'refund_processed' THEN ARRAY['email', 'sms', 'inapp']
    WHEN 'return_rejected' THEN ARRAY['email', 'sms', 'inapp']
    WHEN 'exception' THEN ARRAY['email', 'sms', 'inapp']
    ELSE ARRAY['email', 'inapp'] END"""
_DELIVERIES = f"""
CREATE TEMP TABLE g_dl ON COMMIT DROP AS
SELECT rsn_id_like(nextval('deliveries_id_seq'), e.id) AS id, e.id AS epk, e.rpk, e.tid, e.m,
       e.cid, e.occurred_at, e.received_at, c.ch, random() AS roll, random() AS tail,
       -ln(1 - random()) AS expo, e.received_at + (0.02 + random() * 0.3) * interval '1 second'
           AS created_at
FROM g_ev e CROSS JOIN LATERAL unnest({_CHANNELS}) c(ch)
WHERE (c.ch <> 'email' OR e.has_email) AND (c.ch <> 'sms' OR e.has_phone)
"""
# state by channel and roll: delivered / sent / failed after sending / dead / suppressed / skipped
_STATE = """CASE d.ch
    WHEN 'email' THEN CASE WHEN roll < 0.88 THEN 'delivered' WHEN roll < 0.96 THEN 'sent'
        WHEN roll < 0.98 THEN 'failed' WHEN roll < 0.985 THEN 'dead'
        WHEN roll < 0.99 THEN 'suppressed' ELSE 'skipped' END
    WHEN 'sms' THEN CASE WHEN roll < 0.90 THEN 'delivered' WHEN roll < 0.95 THEN 'sent'
        WHEN roll < 0.98 THEN 'failed' WHEN roll < 0.985 THEN 'dead'
        WHEN roll < 0.995 THEN 'suppressed' ELSE 'skipped' END
    ELSE CASE WHEN roll < 0.97 THEN 'sent' ELSE 'skipped' END END"""
_INSERT_DELIVERIES = f"""
CREATE TEMP TABLE g_dl2 ON COMMIT DROP AS
SELECT d.*, s.state,
       CASE WHEN s.state IN ('delivered', 'sent', 'failed') THEN
           d.created_at + (0.05 + d.expo * 0.6 + CASE WHEN d.tail < 0.03
               THEN 5 + d.tail * 20000 ELSE 0 END) * interval '1 second' END AS sent_at,
       CASE WHEN s.state = 'dead' THEN 5 WHEN s.state IN ('suppressed', 'skipped') THEN 0
            WHEN d.tail < 0.03 THEN 2 + (d.tail * 100)::int % 2 ELSE 1 END AS n_attempts
FROM g_dl d CROSS JOIN LATERAL (SELECT {_STATE} AS state) s;
INSERT INTO deliveries (id, tenant_id, event_pk, return_pk, channel, milestone, urgency,
                        recipient, locale, state, attempts, provider, provider_message_id,
                        subject, body, last_error, skip_reason, occurred_at, created_at,
                        updated_at, sent_at, delivered_at)
SELECT d.id, d.tid, d.epk, d.rpk, d.ch, d.m,
       CASE WHEN d.m IN ('return_initiated', 'return_approved', 'label_created',
                         'refund_processed', 'return_rejected', 'return_cancelled',
                         'exception') THEN 'transactional' ELSE 'informational' END,
       CASE WHEN d.created_at >= :redact_before THEN
           CASE d.ch WHEN 'email' THEN d.cid || '@example.com' WHEN 'sms' THEN '+14155550100'
                ELSE d.cid END END,
       'en-US', d.state, d.n_attempts,
       CASE WHEN d.n_attempts > 0 THEN
           CASE d.ch WHEN 'email' THEN 'sendgrid' WHEN 'sms' THEN 'twilio' ELSE 'inapp' END END,
       CASE WHEN d.sent_at IS NOT NULL THEN 'pm-' || d.id END,
       CASE WHEN d.ch = 'email' AND d.sent_at IS NOT NULL AND d.created_at >= :redact_before
            THEN 'Your return ' || d.m END,
       CASE WHEN d.sent_at IS NOT NULL AND d.created_at >= :redact_before
            THEN repeat('Hello Ana, news about your return. ', CASE d.ch WHEN 'email' THEN 20
                                                                       ELSE 3 END) END,
       CASE d.state WHEN 'failed' THEN CASE d.ch WHEN 'email' THEN 'bounced: mailbox unavailable'
                                                 ELSE 'undelivered: 30003' END
                    WHEN 'dead' THEN 'TransientError: provider timed out' END,
       CASE d.state WHEN 'suppressed' THEN 'hard_bounce' WHEN 'skipped' THEN 'superseded' END,
       d.occurred_at, d.created_at, coalesce(d.sent_at, d.created_at) + interval '1 second',
       d.sent_at,
       CASE WHEN d.state = 'delivered' THEN d.sent_at + (1 + d.expo * 6) * interval '1 second' END
FROM g_dl2 d;
INSERT INTO delivery_attempts (delivery_id, attempt_no, started_at, duration_ms, outcome,
                               provider, provider_message_id, error_class, error_code)
SELECT d.id, a, d.created_at + (a - 1) * interval '30 seconds', 40 + d.expo * 120,
       CASE WHEN a < d.n_attempts OR d.state = 'dead' THEN 'transient' ELSE 'sent' END,
       CASE d.ch WHEN 'email' THEN 'sendgrid' WHEN 'sms' THEN 'twilio' ELSE 'inapp' END,
       CASE WHEN a = d.n_attempts AND d.sent_at IS NOT NULL THEN 'pm-' || d.id END,
       CASE WHEN a < d.n_attempts OR d.state = 'dead' THEN 'TransientError' END,
       CASE WHEN a < d.n_attempts OR d.state = 'dead' THEN '503' END
FROM g_dl2 d CROSS JOIN LATERAL generate_series(1, d.n_attempts) a;
"""
_REJECTED = """
INSERT INTO rejected_events (id, received_at, tenant, event_id, errors, payload)
SELECT rsn_month_id(nextval('rejected_events_id_seq'), at), at, (CAST(:slugs AS text[]))[1 + g % 3],
       'bad-' || :tag || '-' || g,
       '[{"loc": ["milestone"], "msg": "not a milestone", "type": "enum"}]',
       CASE WHEN at < :redact_before THEN '"[redacted]"'::jsonb
            ELSE '{"milestone": "teleported"}'::jsonb END
FROM generate_series(1, :n) g,
     LATERAL (SELECT :m_start + (random() + 0 * g) * :days * interval '1 day' AS at) t
WHERE at < :end_at
"""


@dataclass
class HistoryResult:
    returns: int = 0
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    rejected_events: int = 0
    seconds: float = 0.0
    months: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _months(end: datetime, months: int) -> list[tuple[datetime, datetime]]:
    """(start, end) of each month, oldest first; the newest ends at ``end``."""
    out = []
    for i in range(months - 1, -1, -1):
        n = end.year * 12 + end.month - 1 - i
        start = datetime(n // 12, n % 12 + 1, 1, tzinfo=UTC)
        nxt = datetime((n + 1) // 12, (n + 1) % 12 + 1, 1, tzinfo=UTC)
        out.append((start, min(nxt, end)))
    return out


def _tenants(conn: Connection, n: int) -> tuple[list[int], list[str]]:
    slugs = [TENANTS[i % len(TENANTS)] + (f"-{i // len(TENANTS)}" if i >= len(TENANTS) else "")
             for i in range(n)]
    ids = []
    for slug in slugs:
        ids.append(int(conn.execute(text(
            "INSERT INTO tenants (slug, name) VALUES (:s, :s) ON CONFLICT (slug) DO UPDATE "
            "SET slug = EXCLUDED.slug RETURNING id"), {"s": slug}).scalar_one()))
    return ids, slugs


def generate_history(
    database_url: str | Engine | None = None, *, rows: int, months: int = 13,
    end: datetime | None = None, tenants: int = 8, seed: float = 0.42,
    redact_after_days: int = 30, progress: Callable[[int, int], None] | None = None,
) -> HistoryResult:
    """Add about ``rows`` deliveries of history (with their returns, events, attempts and
    some rejected events) over ``months`` months ending at ``end`` (default: now)."""
    from return_notify.storage.partitions import Month, ensure_default, ensure_month

    engine = (database_url if isinstance(database_url, Engine) else
              create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
              if database_url else None)
    if engine is None:
        from return_notify.storage.db import get_engine

        engine = get_engine()
    end = (end or datetime.now(UTC)).astimezone(UTC)
    redact_before = end.timestamp() - redact_after_days * 86400
    spans = _months(end, months)
    weights = [SEASON[s.month - 1] * (e - s).total_seconds() / (30 * 86400) for s, e in spans]
    result = HistoryResult()
    t0 = time.monotonic()
    per_return = _PER_RETURN
    tag = uuid.uuid4().hex[:6]
    with engine.connect() as conn:
        ensure_default(conn)
        for s, _ in spans:
            ensure_month(conn, Month.of(s))
        conn.commit()
        conn.execute(text("SELECT setseed(:s)"), {"s": seed})
        tids, slugs = _tenants(conn, tenants)
        conn.commit()
        for i, ((start, stop), w) in enumerate(zip(spans, weights, strict=True)):
            left = rows - result.deliveries
            share = w / sum(weights[i:])
            n_returns = max(1, round(left * share / per_return))
            counts = _month(conn, start, stop, end, n_returns, tids, slugs,
                            datetime.fromtimestamp(redact_before, UTC), f"{tag}{i:02d}")
            conn.commit()
            for k, v in counts.items():
                setattr(result, k, getattr(result, k) + v)
            result.months.append({"month": str(Month.of(start)), **counts})
            if result.returns:
                per_return = max(1.0, result.deliveries / result.returns)
            if progress:
                progress(result.deliveries, rows)
        for table in ("returns", "events", "event_keys", "deliveries", "delivery_attempts",
                      "rejected_events"):
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def _month(conn: Connection, start: datetime, stop: datetime, end: datetime, n: int,
           tids: list[int], slugs: list[str], redact_before: datetime, tag: str
           ) -> dict[str, int]:
    """One month of returns started (their events may reach into the next months)."""
    days = max(1.0, (stop - start).total_seconds() / 86400 - 1)
    p = {"n": n, "tids": tids, "slugs": slugs, "regions": list(REGIONS),
         "cats": list(CATEGORIES), "m_start": start, "days": days, "end_at": end,
         "redact_before": redact_before, "tag": tag}
    for sql in (_RETURNS, _PATHS, _EVENTS, _INSERT_RETURNS, _INSERT_EVENTS, _DELIVERIES,
                _INSERT_DELIVERIES):
        conn.execute(text(sql), p)
    counts = dict(zip(("returns", "events", "deliveries", "attempts"), conn.execute(text(
        "SELECT (SELECT count(*) FROM g_path), (SELECT count(*) FROM g_ev), "
        "(SELECT count(*) FROM g_dl2), (SELECT coalesce(sum(n_attempts), 0) FROM g_dl2)")).one(),
        strict=True))
    n_bad = max(1, counts["events"] // 500)
    res = conn.execute(text(_REJECTED), {**p, "n": n_bad})
    counts["rejected_events"] = int(getattr(res, "rowcount", 0) or 0)
    return {k: int(v) for k, v in counts.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m return_notify.devtools.history",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="deliveries of history to add")
    ap.add_argument("--database-url", help="default: RSN_DATABASE_URL")
    ap.add_argument("--months", type=int, default=13)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print the counts as JSON")
    ap.add_argument("--measure", action="store_true",
                    help="then roll the KPI aggregates up and time the sweeper, stats --json, "
                         "GET /v1/stats and report (median of 5)")
    args = ap.parse_args(argv)
    if args.rows < 0 or args.months < 1 or args.tenants < 1:
        ap.error("--rows must be 0 or more, --months and --tenants positive")
    if args.database_url:
        os.environ["RSN_DATABASE_URL"] = args.database_url

    def show(done: int, total: int) -> None:
        if not args.json:
            print(f"\r{done:,} / ~{total:,} deliveries", end="", file=sys.stderr, flush=True)

    result = generate_history(args.database_url, rows=args.rows, months=args.months,
                              tenants=args.tenants, progress=show) if args.rows else HistoryResult()
    out: dict[str, Any] = {"generated": result.as_dict()}
    if args.measure:
        from return_notify.config.settings import get_settings
        from return_notify.devtools.history_reads import measure_reads
        from return_notify.reporting.rollup import rollup
        from return_notify.storage.db import get_engine

        with get_engine().connect() as conn:
            out["rollup"] = rollup(conn, hourly_days=get_settings().stats_hourly_days,
                                   daily_months=get_settings().stats_daily_months).as_dict()
        out["reads"] = measure_reads(repeat=5, cli=True)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"\nadded {result.returns:,} returns, {result.events:,} events, "
              f"{result.deliveries:,} deliveries, {result.attempts:,} attempts, "
              f"{result.rejected_events:,} rejected events in {result.seconds:,.0f} s",
              file=sys.stderr)
        if args.measure:
            reads = {k: v for k, v in out["reads"].items() if k.endswith("_s")}
            print(f"rollup {out['rollup']['seconds']:,.0f} s; reads (s): {reads}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
