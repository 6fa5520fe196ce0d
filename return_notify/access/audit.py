"""The audit log: one row per change (who, what, before, after, when, scope).

``record`` is called in the same transaction as the change it describes, so a change and
its entry commit (or roll back) together. Entries are read through
``GET /v1/admin/audit`` and ``return-notify audit list``; the caller passes a ``visible``
predicate so each principal sees only entries in its scope (see ``principals.authorize``).
Any admin feature can write entries: ``resource`` is the permission resource name
(``rules``, ``principals``, ``templates``, …) and ``region``/``category`` its scope.
Secrets (API keys) never go into an entry; key changes record the key prefix only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from return_notify.storage.models import AuditEntry

#: how many rows one ``list_entries`` call scans at most while filtering by visibility
SCAN_MAX = 5000


@dataclass(frozen=True)
class Actor:
    """Who made a change: a principal (``id``) or an operator at the command line (``None``)."""

    id: int | None
    name: str


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def record(
    session: Session, tenant_id: int, actor: Actor, action: str, resource: str,
    resource_id: str | int | None, *, region: str | None = None, category: str | None = None,
    before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the session's transaction (``action`` e.g. ``rule.update``)."""
    session.add(AuditEntry(
        tenant_id=tenant_id, principal_id=actor.id, actor=actor.name[:128], action=action,
        resource=resource, resource_id=None if resource_id is None else str(resource_id),
        region=region, product_category=category,
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
    ))
    session.flush()


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": e.at, "actor": e.actor, "principal_id": e.principal_id,
            "action": e.action, "resource": e.resource, "resource_id": e.resource_id,
            "region": e.region, "category": e.product_category, "before": e.before,
            "after": e.after}


def list_entries(
    session: Session, tenant_id: int, *, visible: Callable[[dict[str, Any]], bool] | None = None,
    resource: str | None = None, resource_id: str | None = None, before_id: int | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first: up to ``limit`` visible entries older than ``before_id``, and the cursor
    to pass as ``before_id`` for the next page (None when nothing older is left)."""
    out: list[dict[str, Any]] = []
    cursor = before_id
    scanned = 0
    while len(out) < limit and scanned < SCAN_MAX:
        stmt = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
        if resource is not None:
            stmt = stmt.where(AuditEntry.resource == resource)
        if resource_id is not None:
            stmt = stmt.where(AuditEntry.resource_id == resource_id)
        if cursor is not None:
            stmt = stmt.where(AuditEntry.id < cursor)
        batch = session.execute(stmt.order_by(AuditEntry.id.desc()).limit(500)).scalars().all()
        if not batch:
            return out, None
        for e in batch:
            scanned += 1
            cursor = e.id
            d = entry_dict(e)
            if visible is None or visible(d):
                out.append(d)
                if len(out) == limit:
                    break
        if len(batch) < 500 and len(out) < limit:
            return out, None
    return out, cursor
