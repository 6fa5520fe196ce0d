"""Tenant lookups and creation: the one place that reads or writes ``tenants`` by slug.

A tenant row is created by the first event that names it (ingest) or by an operator
(``return-notify tenants create``); everything else finds it by slug here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

__all__ = ["TenantRow", "ensure_tenant", "ensure_tenant_ids", "find_tenant", "find_tenant_id",
           "find_tenant_ids"]

_BY_SLUG = text("SELECT id, slug, name FROM tenants WHERE slug = :s")
_IDS_BY_SLUG = text("SELECT slug, id FROM tenants WHERE slug = ANY(CAST(:slugs AS text[]))")
_UPSERT_SLUGS = text("INSERT INTO tenants (slug) SELECT unnest(CAST(:slugs AS text[])) "
                     "ON CONFLICT (slug) DO NOTHING")


@dataclass(frozen=True)
class TenantRow:
    id: int
    slug: str
    name: str | None

    @property
    def display_name(self) -> str:
        """The retailer's name, else its slug."""
        return self.name or self.slug


def find_tenant(session: Session, slug: str) -> TenantRow | None:
    """The tenant called ``slug``, or None."""
    row = session.execute(_BY_SLUG, {"s": slug}).first()
    return TenantRow(int(row.id), row.slug, row.name) if row is not None else None


def find_tenant_id(session: Session, slug: str) -> int | None:
    """The id of the tenant called ``slug``, or None."""
    row = find_tenant(session, slug)
    return row.id if row is not None else None


def find_tenant_ids(session: Session | Connection, slugs: Iterable[str]) -> dict[str, int]:
    """``slug → id`` for those of ``slugs`` that exist (one query; a session or a plain
    connection)."""
    wanted = sorted(set(slugs))
    if not wanted:
        return {}
    return {slug: int(tid) for slug, tid in session.execute(_IDS_BY_SLUG, {"slugs": wanted})}


def ensure_tenant_ids(session: Session, slugs: Iterable[str]) -> dict[str, int]:
    """``slug → id`` for every one of ``slugs``, creating the missing tenants (ingest)."""
    wanted = sorted(set(slugs))
    if not wanted:
        return {}
    session.execute(_UPSERT_SLUGS, {"slugs": wanted})
    return find_tenant_ids(session, wanted)


def ensure_tenant(session: Session, slug: str, name: str | None = None) -> tuple[int, bool]:
    """Create the tenant if missing (ingest may already have); returns ``(id, created)``.
    A ``name`` given for an existing tenant without one is recorded."""
    row = session.execute(text(
        "INSERT INTO tenants (slug, name) VALUES (:s, :n) ON CONFLICT (slug) DO NOTHING "
        "RETURNING id"
    ), {"s": slug, "n": name}).first()
    if row is not None:
        return int(row[0]), True
    existing = find_tenant(session, slug)
    assert existing is not None  # the insert conflicted on it
    if name and not existing.name:
        session.execute(text("UPDATE tenants SET name = :n WHERE id = :id AND name IS NULL"),
                        {"n": name, "id": existing.id})
    return existing.id, False
