"""The insights' signals for a generated history (``devtools/history.py``): tracking on for
every tenant, the customers' first opens and clicks, and satisfaction ratings, made
set-based inside PostgreSQL, so that the insight queries can be measured on a large history.

Per notification (return, milestone, channel) sent: email opened 45 %, clicked 12 %;
SMS clicked 20 %; in-app clicked 15 %, and every in-app delivery sent gets its inbox item
(read 40 %). A rating for ``--rated`` (15 %) of the completed returns, its score falling
with the return's slowest time to status update. A second run adds only where none is yet
(a signal is unique per notification and kind, a rating per return)::

    python -m return_notify.devtools.history_signals [--database-url URL] [--rated 0.15]
        [--measure]   # then time insights_summary (what stats and GET /v1/stats add)
        [--no-add]    # only measure
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from sqlalchemy import create_engine, text

_TRACKING = """
INSERT INTO tenant_insights (tenant_id, tracking, tracking_since, survey)
SELECT t.id, true, (SELECT coalesce(min(created_at), now()) FROM deliveries), true
FROM tenants t
ON CONFLICT (tenant_id) DO UPDATE
SET tracking = true, survey = true, tracking_since = EXCLUDED.tracking_since
"""

_SIGNALS = """
INSERT INTO engagement_signals (tenant_id, return_pk, delivery_id, channel, milestone, kind,
                                source, at)
SELECT u.tenant_id, u.return_pk, u.delivery_id, u.channel, u.milestone, k.kind,
       CASE WHEN u.channel = 'email' THEN 'sendgrid' ELSE 'redirect' END,
       u.sent_at + (1 + random() * 7200) * interval '1 second'
FROM (
    SELECT DISTINCT ON (d.return_pk, d.milestone, d.channel) d.tenant_id, d.return_pk,
           d.id AS delivery_id, d.channel, d.milestone, d.sent_at, random() AS roll
    FROM deliveries d WHERE d.sent_at IS NOT NULL
    ORDER BY d.return_pk, d.milestone, d.channel, d.sent_at
) u
CROSS JOIN LATERAL (VALUES ('open', 0.45), ('click', 0.12)) k(kind, p)
WHERE (u.channel = 'email' AND u.roll < k.p)
   OR (u.channel = 'sms' AND k.kind = 'click' AND u.roll < 0.20)
   OR (u.channel = 'inapp' AND k.kind = 'click' AND u.roll < 0.15)
ON CONFLICT ON CONSTRAINT uq_engagement_signals_once DO NOTHING
"""

_INBOX = """
INSERT INTO inbox_items (tenant_id, customer_id, delivery_id, body, milestone, created_at,
                         read_at)
SELECT d.tenant_id, 'hc', d.id, '', d.milestone, d.sent_at,
       CASE WHEN random() < 0.4 THEN d.sent_at + random() * interval '2 days' END
FROM deliveries d WHERE d.channel = 'inapp' AND d.sent_at IS NOT NULL
ON CONFLICT (delivery_id) DO NOTHING
"""

_RATINGS = """
INSERT INTO satisfaction_ratings (tenant_id, return_pk, score, source, channel, milestone,
                                  first_rated_at, rated_at)
SELECT r.tenant_id, r.id,
       greatest(1, least(5, round(4.6 - least(2.5, ln(1 + w.s / 60.0) / 4)
                                  + (random() - 0.5) * 2)))::smallint,
       'link', 'email', 'return_completed', w.at, w.at
FROM returns r
CROSS JOIN LATERAL (
    SELECT max(extract(epoch FROM d.sent_at - d.occurred_at)) AS s,
           max(d.sent_at) + interval '1 day' AS at
    FROM deliveries d WHERE d.return_pk = r.id AND d.sent_at IS NOT NULL
) w
WHERE r.milestone = 'return_completed' AND w.at IS NOT NULL AND random() < :rated
ON CONFLICT ON CONSTRAINT uq_satisfaction_ratings_return DO NOTHING
"""


def add_signals(database_url: str, rated: float = 0.15) -> dict[str, Any]:
    """Switch tracking on and add the signals and ratings; their counts and the time taken."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    t0 = time.monotonic()
    out: dict[str, Any] = {}
    with engine.begin() as conn:
        conn.execute(text(_TRACKING))
        out["signals"] = conn.execute(text(_SIGNALS)).rowcount
        out["inbox_items"] = conn.execute(text(_INBOX)).rowcount
        out["ratings"] = conn.execute(text(_RATINGS), {"rated": rated}).rowcount
    with engine.connect() as conn:
        for table in ("engagement_signals", "satisfaction_ratings", "tenant_insights",
                      "inbox_items"):
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    engine.dispose()
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def measure(repeat: int = 3) -> dict[str, Any]:
    """Median seconds of ``insights_summary`` (each part, and all three) for all tenants, the
    busiest tenant, the busiest scoped to its commonest region, and the smallest tenant
    (``small_tenant``: the one with fewest deliveries, a tenant with none if there is one);
    then the same parts without the caps (what ``return-notify insights …`` reads)."""
    import statistics

    from return_notify.reporting.insight_summary import PARTS, insights_summary
    from return_notify.reporting.kpis import ReturnScope
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        tenant, region = s.execute(text(
            "SELECT t.slug, r.region FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
            "JOIN returns r ON r.id = d.return_pk GROUP BY 1, 2 ORDER BY count(*) DESC "
            "LIMIT 1")).one()
        small = s.execute(text(
            "SELECT t.slug FROM tenants t LEFT JOIN deliveries d ON d.tenant_id = t.id "
            "GROUP BY t.slug ORDER BY count(d.id), t.slug LIMIT 1")).scalar_one()
    cases: dict[str, dict[str, Any]] = {
        "all_tenants": {}, "busy_tenant": {"tenant": tenant},
        "busy_tenant_region": {"tenant": tenant, "scope": ReturnScope((region.upper(),), ())},
        "small_tenant": {"tenant": small}}

    def timed(kw: dict[str, Any]) -> float:
        times = []
        for _ in range(repeat):
            with session_scope() as s:
                t0 = time.perf_counter()
                insights_summary(s, **kw)
                times.append(time.perf_counter() - t0)
        return round(statistics.median(times), 3)

    out: dict[str, Any] = {"busy": tenant, "region": region, "small": small}
    for name, kw in cases.items():
        out[name] = {part: timed({**kw, "parts": (part,)}) for part in PARTS}
        out[name]["all_s"] = timed(kw)
    out["uncapped_all_tenants"] = {part: timed({"parts": (part,), "notifications": 0,
                                                "ratings": 0}) for part in PARTS}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m return_notify.devtools.history_signals",
                                 description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--database-url", help="default: RSN_DATABASE_URL")
    ap.add_argument("--rated", type=float, default=0.15,
                    help="share of completed returns that get a rating (0-1)")
    ap.add_argument("--measure", action="store_true",
                    help="then time insights_summary: capped (as stats and GET /v1/stats) "
                         "and uncapped, median of 3")
    ap.add_argument("--no-add", action="store_true", help="add nothing (only --measure)")
    args = ap.parse_args(argv)
    url = args.database_url or os.environ.get("RSN_DATABASE_URL")
    if not url:
        ap.error("--database-url or RSN_DATABASE_URL is needed")
    if not 0 <= args.rated <= 1:
        ap.error("--rated must lie between 0 and 1")
    out: dict[str, Any] = {} if args.no_add else {"added": add_signals(url, args.rated)}
    if args.measure:
        os.environ["RSN_DATABASE_URL"] = url
        out["insights_summary_s"] = measure()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
