"""Tenants and their ingest API keys (``Bearer rsn_…``): create, list, issue, revoke,
authenticate. The key scheme is ``access/keys.py``'s; the HTTP dependency that reads the
``Authorization`` header is ``api/auth.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from return_notify.access.keys import hash_key, key_matches, key_prefix, new_key
from return_notify.storage.tenants import ensure_tenant

__all__ = ["KEY_SCHEME", "TenantAuth", "authenticate_key", "create_tenant", "issue_api_key",
           "list_tenants", "revoke_api_key"]

KEY_SCHEME = "rsn"


@dataclass(frozen=True)
class TenantAuth:
    """The tenant a request acts for."""

    tenant_id: int
    slug: str
    key_prefix: str


def issue_api_key(session: Session, tenant_id: int, name: str | None = None) -> str:
    """Create an API key for a tenant; returns the key, which is never stored in clear."""
    for _ in range(5):
        prefix, key = new_key(KEY_SCHEME)
        try:
            with session.begin_nested():
                session.execute(text(
                    "INSERT INTO tenant_api_keys (tenant_id, key_prefix, key_hash, name) "
                    "VALUES (:tid, :p, :h, :n)"
                ), {"tid": tenant_id, "p": prefix, "h": hash_key(key), "n": name})
            return key
        except IntegrityError:  # prefix collision: astronomically rare, try another
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def create_tenant(session: Session, slug: str, name: str | None = None) -> tuple[int, bool]:
    """Create the tenant if missing (ingest may already have); returns (id, created)."""
    return ensure_tenant(session, slug, name)


def list_tenants(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(text("""
        SELECT t.id, t.slug, t.name, t.created_at,
               count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_keys,
               array_remove(array_agg(k.key_prefix ORDER BY k.id)
                            FILTER (WHERE k.revoked_at IS NULL), NULL) AS key_prefixes
        FROM tenants t LEFT JOIN tenant_api_keys k ON k.tenant_id = t.id
        GROUP BY t.id ORDER BY t.slug
    """)).mappings().all()
    return [dict(r) for r in rows]


def revoke_api_key(session: Session, prefix: str) -> bool:
    result = session.execute(text(
        "UPDATE tenant_api_keys SET revoked_at = now() "
        "WHERE key_prefix = :p AND revoked_at IS NULL"
    ), {"p": prefix})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def authenticate_key(session: Session, key: str) -> TenantAuth | None:
    """The tenant of an ``rsn_…`` key, or None (unknown, revoked or malformed)."""
    prefix = key_prefix(key, KEY_SCHEME)
    if prefix is None:
        return None
    row = session.execute(text(
        "SELECT k.key_hash, t.id, t.slug FROM tenant_api_keys k "
        "JOIN tenants t ON t.id = k.tenant_id WHERE k.key_prefix = :p AND k.revoked_at IS NULL"
    ), {"p": prefix}).first()
    if row is None or not key_matches(row.key_hash, key):
        return None
    return TenantAuth(int(row.id), row.slug, prefix)
