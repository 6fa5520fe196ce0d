"""Tracking number → return index, and what we already know about a return's customer.

Filled from our own ``label_created`` / ``shipment_dispatched`` events (their
``data.tracking_number``) by ingest, inside its transaction; read by the carrier webhooks.
Plain SQL on the caller's session: no commit here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.events import Milestone, ReturnEvent
from return_notify.sources.base import normalize_tracking_number

#: Milestones whose ``data.tracking_number`` is the return parcel's.
TRACKED_MILESTONES = frozenset({Milestone.LABEL_CREATED, Milestone.SHIPMENT_DISPATCHED})

_UPSERT = text("""
INSERT INTO carrier_trackings (tenant_id, return_pk, tracking_number, carrier)
SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:rpks AS bigint[]), CAST(:tns AS text[]),
                     CAST(:carriers AS text[]))
ON CONFLICT ON CONSTRAINT uq_carrier_trackings_number DO UPDATE
SET return_pk = EXCLUDED.return_pk,
    carrier = coalesce(EXCLUDED.carrier, carrier_trackings.carrier),
    updated_at = now()
WHERE carrier_trackings.return_pk IS DISTINCT FROM EXCLUDED.return_pk
   OR carrier_trackings.carrier IS DISTINCT FROM coalesce(EXCLUDED.carrier,
                                                          carrier_trackings.carrier)
""")


@dataclass(frozen=True)
class KnownReturn:
    """A return as the carrier adapters need it to build an event."""

    pk: int
    return_id: str
    customer: dict[str, Any]
    region: str | None
    product_category: str | None


def tracking_of(event: ReturnEvent) -> tuple[str, str | None] | None:
    """``(tracking_number, carrier)`` of a label/dispatch event, else None."""
    if event.milestone not in TRACKED_MILESTONES:
        return None
    number = event.data.get("tracking_number")
    if not isinstance(number, (str, int)) or not normalize_tracking_number(str(number)):
        return None
    carrier = event.data.get("carrier")
    return normalize_tracking_number(str(number)), str(carrier)[:64] if carrier else None


def remember_trackings(session: Session,
                       rows: Iterable[tuple[int, int, str, str | None]]) -> int:
    """Upsert ``(tenant_id, return_pk, tracking_number, carrier)`` rows in one statement.

    The newest label for a number wins (carriers recycle numbers); returns rows given.
    """
    dedup: dict[tuple[int, str], tuple[int, str | None]] = {}
    for tenant_id, return_pk, number, carrier in rows:
        normalized = normalize_tracking_number(number)
        if normalized:
            dedup[(tenant_id, normalized)] = (return_pk, carrier)
    if not dedup:
        return 0
    items = sorted(dedup.items())  # key order: no deadlocks between concurrent batches
    session.execute(_UPSERT, {
        "tids": [k[0] for k, _ in items], "tns": [k[1] for k, _ in items],
        "rpks": [v[0] for _, v in items], "carriers": [v[1] for _, v in items],
    })
    return len(items)


def remember_tracking(session: Session, tenant_id: int, return_pk: int, tracking_number: str,
                      carrier: str | None) -> None:
    """Index one tracking number for a return (see ``remember_trackings``)."""
    remember_trackings(session, [(tenant_id, return_pk, tracking_number, carrier)])


def find_return(session: Session, tenant_id: int, *, tracking_number: str | None = None,
                return_ref: str | None = None) -> KnownReturn | None:
    """The return a carrier update is about: by the reference in the provider's metadata
    (when it names a return we know), else by the tracking number index."""
    pk = None
    if return_ref:
        pk = session.execute(text(
            "SELECT id FROM returns WHERE tenant_id = :t AND return_id = :r"
        ), {"t": tenant_id, "r": return_ref}).scalar()
    if pk is None and tracking_number:
        pk = session.execute(text(
            "SELECT return_pk FROM carrier_trackings WHERE tenant_id = :t AND tracking_number = :n"
        ), {"t": tenant_id, "n": normalize_tracking_number(tracking_number)}).scalar()
    return None if pk is None else known_return(session, int(pk))


def find_return_by_ref(session: Session, tenant_id: int, return_id: str) -> KnownReturn | None:
    return find_return(session, tenant_id, return_ref=return_id)


def known_return(session: Session, return_pk: int) -> KnownReturn | None:
    """The return and the customer of its most recent event (name, contact, locale …).

    After retention has erased contact data only the customer id is left, and only in-app
    can reach them, which is right: we no longer hold their address.
    """
    row = session.execute(text("""
        SELECT r.id, r.return_id, r.customer_id, r.region, r.product_category,
               (SELECT e.payload -> 'customer' FROM events e WHERE e.return_pk = r.id
                ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) AS customer
        FROM returns r WHERE r.id = :pk
    """), {"pk": return_pk}).mappings().first()
    if row is None:
        return None
    customer = row["customer"] if isinstance(row["customer"], dict) else {}
    if not customer.get("id"):
        customer = {**customer, "id": row["customer_id"] or "unknown"}
    return KnownReturn(int(row["id"]), row["return_id"], dict(customer), row["region"],
                       row["product_category"])
