"""Read-only queries behind ``rejected list|show``: events ingest could not take.

Every event that breaks the contract, or that PostgreSQL cannot store, is kept in
``rejected_events`` with its reasons and a storable copy of its payload
(``pipeline.rejections``); these are the operator's view of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["count_rejected", "get_rejected", "list_rejected"]


def _where(tenant: str | None, since: datetime | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if tenant is not None:
        clauses.append("tenant = :tenant")
        params["tenant"] = tenant
    if since is not None:
        clauses.append("received_at >= :since")
        params["since"] = since
    return " AND ".join(clauses), params


def list_rejected(session: Session, *, tenant: str | None = None,
                  since: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first: id, received_at, tenant, event_id, errors (no payload)."""
    where, params = _where(tenant, since)
    rows = session.execute(text(
        f"SELECT id, received_at, tenant, event_id, errors FROM rejected_events WHERE {where} "
        "ORDER BY received_at DESC, id DESC LIMIT :limit"), {**params, "limit": limit})
    return [dict(r) for r in rows.mappings()]


def count_rejected(session: Session, *, tenant: str | None = None,
                   since: datetime | None = None) -> int:
    where, params = _where(tenant, since)
    return int(session.execute(text(f"SELECT count(*) FROM rejected_events WHERE {where}"),
                               params).scalar_one())


def get_rejected(session: Session, rejected_id: int) -> dict[str, Any] | None:
    """One rejected event with its stored payload."""
    row = session.execute(text(
        "SELECT id, received_at, tenant, event_id, errors, payload FROM rejected_events "
        "WHERE id = :id"), {"id": rejected_id}).mappings().first()
    return dict(row) if row is not None else None
