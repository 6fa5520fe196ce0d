"""Self-healing and operator actions on deliveries: sweep, dead-letter list and replay."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_SWEEP = text("""
SELECT id, channel FROM deliveries
WHERE (state IN ('retrying', 'scheduled') AND next_attempt_at <= now())
   OR (state = 'pending' AND updated_at < now() - make_interval(secs => :lease))
   OR (state = 'sending' AND lease_until < now())
ORDER BY id
LIMIT :limit
""")


def due_deliveries(session: Session, lease_s: float, limit: int = 10_000) -> dict[str, list[int]]:
    """Deliveries that should be (re)enqueued: retries and schedules that are due, and
    pending/sending ones whose broker message was lost (PostgreSQL is the truth).

    Re-enqueueing one that is still queued is harmless: the claim sends it once.
    """
    out: dict[str, list[int]] = defaultdict(list)
    for did, channel in session.execute(_SWEEP, {"lease": lease_s, "limit": limit}):
        out[channel].append(did)
    return dict(out)


def _dlq_filter(
    ids: list[int] | None, tenant: str | None, channel: str | None, since: datetime | None
) -> tuple[str, dict[str, Any]]:
    where = ["d.state = 'dead'"]
    params: dict[str, Any] = {}
    if ids:
        where.append("d.id = ANY(CAST(:ids AS bigint[]))")
        params["ids"] = ids
    if tenant:
        where.append("t.slug = :tenant")
        params["tenant"] = tenant
    if channel:
        where.append("d.channel = :channel")
        params["channel"] = channel
    if since:
        where.append("d.updated_at >= :since")
        params["since"] = since
    return " AND ".join(where), params


def dlq_list(
    session: Session, *, tenant: str | None = None, channel: str | None = None,
    since: datetime | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    where, params = _dlq_filter(None, tenant, channel, since)
    params["limit"] = limit
    rows = session.execute(text(
        f"SELECT d.id, t.slug AS tenant, d.channel, d.milestone, d.attempts, d.last_error, "
        f"d.updated_at, r.return_id FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
        f"JOIN returns r ON r.id = d.return_pk WHERE {where} ORDER BY d.id LIMIT :limit"
    ), params).mappings().all()
    return [dict(r) for r in rows]


def dlq_count(
    session: Session, *, ids: list[int] | None = None, tenant: str | None = None,
    channel: str | None = None, since: datetime | None = None,
) -> int:
    """How many dead deliveries ``dlq_replay`` with the same filter would replay."""
    where, params = _dlq_filter(ids, tenant, channel, since)
    return int(session.execute(text(
        f"SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id WHERE {where}"
    ), params).scalar_one())


def dlq_replay(
    session: Session, *, ids: list[int] | None = None, tenant: str | None = None,
    channel: str | None = None, since: datetime | None = None, limit: int | None = None,
) -> dict[str, list[int]]:
    """Move dead deliveries back to pending with a fresh retry budget; returns the ids to
    enqueue per channel (after the caller commits). With ``limit``, at most that many (the
    lowest ids): call it again, one short transaction each, until it returns nothing."""
    where, params = _dlq_filter(ids, tenant, channel, since)
    if limit is not None:
        params["limit"] = limit
        where = (f"d.id IN (SELECT d.id FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                 f"WHERE {where} ORDER BY d.id LIMIT :limit FOR UPDATE OF d SKIP LOCKED)")
    rows = session.execute(text(
        f"UPDATE deliveries d SET state = 'pending', replays = d.replays + 1, "
        f"next_attempt_at = NULL, updated_at = now() FROM tenants t "
        f"WHERE t.id = d.tenant_id AND {where} RETURNING d.id, d.channel"
    ), params).all()
    out: dict[str, list[int]] = defaultdict(list)
    for did, ch in rows:
        out[ch].append(did)
    return dict(out)
