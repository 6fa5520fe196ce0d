"""Counts and latencies for `return-notify stats`, the demo summary and the benchmark."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def pipeline_stats(
    session: Session, *, since: datetime | None = None, tenant: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"since": since, "tenant": tenant}
    ev_where = (
        "(CAST(:since AS timestamptz) IS NULL OR e.received_at >= :since) AND "
        "(CAST(:tenant AS text) IS NULL OR t.slug = :tenant)"
    )
    d_where = ev_where.replace("e.received_at", "d.created_at")
    events = {
        row.disposition: row.n for row in session.execute(text(
            f"SELECT e.disposition, count(*) AS n FROM events e JOIN tenants t "
            f"ON t.id = e.tenant_id WHERE {ev_where} GROUP BY 1"), params)
    }
    rejected = session.execute(text(
        "SELECT count(*) FROM rejected_events WHERE "
        "(CAST(:since AS timestamptz) IS NULL OR received_at >= :since) AND "
        "(CAST(:tenant AS text) IS NULL OR tenant = :tenant)"), params).scalar_one()
    by_channel: dict[str, dict[str, int]] = {}
    for row in session.execute(text(
        f"SELECT d.channel, d.state, count(*) AS n FROM deliveries d JOIN tenants t "
        f"ON t.id = d.tenant_id WHERE {d_where} GROUP BY 1, 2 ORDER BY 1, 2"), params):
        by_channel.setdefault(row.channel, {})[row.state] = row.n
    secs = "extract(epoch FROM d.sent_at - d.occurred_at)"
    dlv = "extract(epoch FROM d.delivered_at - d.occurred_at)"
    lat = session.execute(text(
        f"SELECT count(d.sent_at) AS n, avg({secs}) AS avg, "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {secs}) AS p50, "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {secs}) AS p95, "
        f"percentile_cont(0.99) WITHIN GROUP (ORDER BY {secs}) AS p99, "
        f"count(d.delivered_at) AS n_dlv, avg({dlv}) AS avg_dlv, "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {dlv}) AS p50_dlv, "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {dlv}) AS p95_dlv, "
        f"min(d.sent_at) AS first_sent, max(d.sent_at) AS last_sent "
        f"FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
        f"WHERE (d.sent_at IS NOT NULL OR d.delivered_at IS NOT NULL) AND {d_where}"),
        params).one()
    total = sum(n for st in by_channel.values() for n in st.values())
    sent = sum(st.get("sent", 0) + st.get("delivered", 0) for st in by_channel.values())
    return {
        "events": {
            "accepted": sum(events.values()),
            "notified": events.get("notified", 0),
            "stale": events.get("stale", 0),
            "repeat": events.get("repeat", 0),
            "no_channel": events.get("no_channel", 0),
            "rejected": rejected,
        },
        "deliveries": {"total": total, "sent": sent, "by_channel": by_channel},
        "latency_s": {
            "occurred_to_sent_p50": _f(lat.p50), "occurred_to_sent_p95": _f(lat.p95),
            "occurred_to_sent_p99": _f(lat.p99), "samples": lat.n,
            "occurred_to_sent_avg": _f(lat.avg),
            "occurred_to_delivered_avg": _f(lat.avg_dlv),
            "occurred_to_delivered_p50": _f(lat.p50_dlv),
            "occurred_to_delivered_p95": _f(lat.p95_dlv), "delivered_samples": lat.n_dlv,
        },
        "first_sent_at": lat.first_sent.isoformat() if lat.first_sent else None,
        "last_sent_at": lat.last_sent.isoformat() if lat.last_sent else None,
    }


def _f(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def duplicate_sends(session: Session) -> int:
    """Provider calls beyond the first per delivery, as the sandbox provider recorded them."""
    return session.execute(text(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM sandbox_messages "
        "GROUP BY delivery_id HAVING count(*) > 1) x")).scalar_one()
