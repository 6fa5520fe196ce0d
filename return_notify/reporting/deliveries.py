"""Read-only queries behind `deliveries list|show`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.masking import mask


def list_deliveries(
    session: Session, *, state: str | None = None, channel: str | None = None,
    tenant: str | None = None, return_id: str | None = None, limit: int = 50,
) -> list[dict[str, Any]]:
    where: list[str] = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    for col, val, name in (("d.state", state, "state"), ("d.channel", channel, "channel"),
                           ("t.slug", tenant, "tenant"), ("r.return_id", return_id, "rid")):
        if val:
            where.append(f"{col} = :{name}")
            params[name] = val
    rows = session.execute(text(
        "SELECT d.id, t.slug AS tenant, r.return_id, d.milestone, d.channel, d.state, "
        "d.attempts, d.recipient, d.provider, d.provider_message_id, d.occurred_at, "
        "d.sent_at, d.updated_at FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
        "JOIN returns r ON r.id = d.return_pk WHERE " + " AND ".join(where)
        + " ORDER BY d.id DESC LIMIT :limit"), params).mappings().all()
    out = []
    for r in rows:
        item = dict(r)
        item["recipient"] = mask(item["recipient"])
        out.append(item)
    return out


def get_delivery(session: Session, delivery_id: int) -> dict[str, Any] | None:
    row = session.execute(text(
        "SELECT d.id, t.slug AS tenant, r.return_id, e.event_id, d.milestone, d.channel, "
        "d.urgency, d.state, d.attempts, d.replays, d.recipient, d.locale, d.provider, "
        "d.provider_message_id, d.subject, d.body, d.last_error, d.skip_reason, "
        "d.next_attempt_at, d.occurred_at, d.created_at, d.sent_at, d.delivered_at, "
        "d.updated_at FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
        "JOIN returns r ON r.id = d.return_pk JOIN events e ON e.id = d.event_pk "
        "WHERE d.id = :id"), {"id": delivery_id}).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["attempts_log"] = [dict(a) for a in session.execute(text(
        "SELECT attempt_no, started_at, duration_ms, outcome, provider, provider_message_id, "
        "error_class, error_code, error_message FROM delivery_attempts "
        "WHERE delivery_id = :id ORDER BY id"), {"id": delivery_id}).mappings()]
    return out
