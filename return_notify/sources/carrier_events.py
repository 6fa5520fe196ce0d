"""Carrier update → our event: per-tenant webhook secrets, matching a parcel to a return,
building the ``ReturnEvent`` payload, and the operator-visible list of unmatched updates."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.masking import mask
from return_notify.errors import EventValidationError
from return_notify.events import parse_event
from return_notify.sources import aftership, easypost, shippo
from return_notify.sources.base import CarrierUpdate, normalize_tracking_number
from return_notify.sources.tracking import KnownReturn, find_return

log = logging.getLogger(__name__)

PROVIDERS: dict[str, ModuleType] = {m.NAME: m for m in (easypost, aftership, shippo)}

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Outcome:
    """What became of one carrier update."""

    matched: bool
    payload: dict[str, Any] | None = None  # the event to publish (matched)
    unmatched_id: int | None = None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def get_secret(session: Session, tenant_id: int, provider: str) -> str | None:
    return session.execute(text(
        "SELECT secret FROM carrier_webhook_secrets WHERE tenant_id = :t AND provider = :p"
    ), {"t": tenant_id, "p": provider}).scalar()


def set_secret(session: Session, tenant_id: int, provider: str, secret: str) -> None:
    """Store (or rotate) a tenant's webhook secret for ``provider``."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    session.execute(text("""
        INSERT INTO carrier_webhook_secrets (tenant_id, provider, secret) VALUES (:t, :p, :s)
        ON CONFLICT ON CONSTRAINT pk_carrier_webhook_secrets
        DO UPDATE SET secret = EXCLUDED.secret, updated_at = now()
    """), {"t": tenant_id, "p": provider, "s": secret})


def build_event(update: CarrierUpdate, tenant: str, known: KnownReturn) -> dict[str, Any]:
    """The contract-valid event payload for a matched update (raises EventValidationError)."""
    assert update.milestone is not None
    data: dict[str, Any] = {"tracking_number": update.tracking_number,
                            "carrier_status": update.status}
    for key, value in (("carrier", update.carrier), ("eta", update.eta),
                       ("reason", update.reason), ("tracking_url", update.tracking_url),
                       ("carrier_message", update.detail)):
        if value:
            data[key] = value
    raw: dict[str, Any] = {
        "event_id": update.key, "tenant": tenant, "return_id": known.return_id,
        "milestone": update.milestone.value, "occurred_at": update.occurred_at.isoformat(),
        "customer": known.customer, "data": data, "source": f"carrier:{update.provider}",
    }
    if known.region:
        raw["region"] = known.region
    if known.product_category:
        raw["product_category"] = known.product_category
    return parse_event(raw).model_dump(mode="json", exclude_none=True)


def record_unmatched(session: Session, tenant_id: int, update: CarrierUpdate) -> int:
    """Keep an update no return matches (retries of it bump ``seen``); returns its row id."""
    return int(session.execute(text("""
        INSERT INTO unmatched_carrier_events (tenant_id, provider, provider_key, tracking_number,
            carrier, status, milestone, occurred_at, summary)
        VALUES (:t, :p, :k, :n, :c, :s, :m, :at, CAST(:summary AS jsonb))
        ON CONFLICT ON CONSTRAINT uq_unmatched_carrier_events_key
        DO UPDATE SET seen = unmatched_carrier_events.seen + 1, received_at = now()
        RETURNING id
    """), {"t": tenant_id, "p": update.provider, "k": update.key,
           "n": normalize_tracking_number(update.tracking_number), "c": update.carrier,
           "s": update.status, "m": update.milestone.value if update.milestone else None,
           "at": update.occurred_at, "summary": _json(update.summary())}).scalar_one())


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def handle_update(session: Session, tenant_id: int, tenant: str, update: CarrierUpdate) -> Outcome:
    """Match the update to a return and build its event, or record it as unmatched."""
    known = find_return(session, tenant_id, tracking_number=update.tracking_number,
                        return_ref=update.return_ref)
    if known is None:
        row_id = record_unmatched(session, tenant_id, update)
        log.warning("%s update for unknown tracking number %s (tenant %s): kept as unmatched #%d",
                    update.provider, mask(update.tracking_number), tenant, row_id)
        return Outcome(matched=False, unmatched_id=row_id)
    try:
        return Outcome(matched=True, payload=build_event(update, tenant, known))
    except EventValidationError as exc:  # e.g. a stored customer the contract now refuses
        row_id = record_unmatched(session, tenant_id, update)
        log.error("%s update for return %s (tenant %s) is not a valid event (%s): kept as "
                  "unmatched #%d", update.provider, known.return_id, tenant, exc, row_id)
        return Outcome(matched=False, unmatched_id=row_id)


def list_unmatched(session: Session, tenant_id: int | None = None, limit: int = 100,
                   include_matched: bool = False) -> list[dict[str, Any]]:
    where = ["(CAST(:t AS int) IS NULL OR u.tenant_id = :t)"]
    if not include_matched:
        where.append("u.matched_at IS NULL")
    rows = session.execute(text(f"""
        SELECT u.id, t.slug AS tenant, u.provider, u.tracking_number, u.carrier, u.status,
               u.milestone, u.occurred_at, u.received_at, u.seen, u.matched_at,
               u.matched_event_id, u.provider_key
        FROM unmatched_carrier_events u JOIN tenants t ON t.id = u.tenant_id
        WHERE {' AND '.join(where)} ORDER BY u.received_at DESC, u.id DESC LIMIT :n
    """), {"t": tenant_id, "n": max(1, min(limit, 1000))}).mappings().all()
    return [dict(r) for r in rows]


def rematch(session_scope: SessionFactory, publish: Callable[[list[dict[str, Any]]], Any],
            tenant_id: int | None = None, limit: int = 1000) -> dict[str, int]:
    """Publish unmatched updates whose tracking number is now known, then mark them matched.

    For the race where a carrier reports before our own label event arrived. Publishing
    comes first: a crash before marking only republishes, and event ids deduplicate.
    """
    with session_scope() as s:
        rows = s.execute(text("""
            SELECT u.id, u.tenant_id, t.slug, u.summary FROM unmatched_carrier_events u
            JOIN tenants t ON t.id = u.tenant_id
            WHERE u.matched_at IS NULL AND u.milestone IS NOT NULL
              AND (CAST(:t AS int) IS NULL OR u.tenant_id = :t)
            ORDER BY u.occurred_at, u.id LIMIT :n
        """), {"t": tenant_id, "n": limit}).all()
        ready: list[tuple[int, dict[str, Any]]] = []
        for row_id, tid, slug, summary in rows:
            update = CarrierUpdate.from_summary(summary)
            known = find_return(s, tid, tracking_number=update.tracking_number,
                                return_ref=update.return_ref)
            if known is not None:
                ready.append((row_id, build_event(update, slug, known)))
    if ready:
        publish([payload for _, payload in ready])
        with session_scope() as s:
            s.execute(text(
                "UPDATE unmatched_carrier_events u SET matched_at = now(), matched_event_id = v.e "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:eids AS text[])) AS v(id, e) "
                "WHERE u.id = v.id"
            ), {"ids": [i for i, _ in ready], "eids": [p["event_id"] for _, p in ready]})
    return {"checked": len(rows), "published": len(ready)}
