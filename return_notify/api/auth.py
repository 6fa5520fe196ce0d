"""Authentication: tenant API keys (``Bearer rsn_…``) and customer inbox tokens.

An API key is ``rsn_<prefix>_<secret>``; the prefix finds the row, and only SHA-256 of
the whole key is stored (the key is 192 random bits, so a slow KDF adds nothing but
latency on every request). Keys are shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Query, status
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from return_notify.config.settings import get_settings
from return_notify.inbox import InvalidInboxToken, tenant_id_for_slug, verify_inbox_token
from return_notify.storage.db import session_scope

KEY_SCHEME = "rsn"


@dataclass(frozen=True)
class TenantAuth:
    """The tenant a request acts for."""

    tenant_id: int
    slug: str
    key_prefix: str


@dataclass(frozen=True)
class CustomerAuth:
    """The customer whose inbox a request reads."""

    tenant_id: int
    tenant: str
    customer_id: str
    expires_at: int


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_SCHEME}_{prefix}_{secrets.token_hex(24)}"


def issue_api_key(session: Session, tenant_id: int, name: str | None = None) -> str:
    """Create an API key for a tenant; returns the key, which is never stored in clear."""
    for _ in range(5):
        prefix, key = _new_key()
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


def create_tenant(session: Session, slug: str, name: str | None = None
                  ) -> tuple[int, bool]:
    """Create the tenant if missing (ingest may already have); returns (id, created)."""
    row = session.execute(text(
        "INSERT INTO tenants (slug, name) VALUES (:s, :n) ON CONFLICT (slug) DO NOTHING "
        "RETURNING id"
    ), {"s": slug, "n": name}).first()
    if row is not None:
        return int(row[0]), True
    tid = session.execute(text("SELECT id FROM tenants WHERE slug = :s"), {"s": slug}).scalar_one()
    if name:
        session.execute(text("UPDATE tenants SET name = :n WHERE id = :id AND name IS NULL"),
                        {"n": name, "id": tid})
    return int(tid), False


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


def revoke_api_key(session: Session, key_prefix: str) -> bool:
    result = session.execute(text(
        "UPDATE tenant_api_keys SET revoked_at = now() "
        "WHERE key_prefix = :p AND revoked_at IS NULL"
    ), {"p": key_prefix})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def authenticate_key(session: Session, key: str) -> TenantAuth | None:
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(key) > 200:
        return None
    row = session.execute(text(
        "SELECT k.key_hash, t.id, t.slug FROM tenant_api_keys k "
        "JOIN tenants t ON t.id = k.tenant_id WHERE k.key_prefix = :p AND k.revoked_at IS NULL"
    ), {"p": parts[1]}).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return TenantAuth(int(row.id), row.slug, parts[1])


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require_tenant(
    authorization: Annotated[str | None, Header(description="Bearer <tenant API key>")] = None,
) -> TenantAuth:
    """FastAPI dependency: the tenant of the API key in ``Authorization: Bearer``."""
    key = _bearer(authorization)
    if key is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <tenant API key>'")
    with session_scope() as session:
        tenant = authenticate_key(session, key)
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    return tenant


def require_customer(
    authorization: Annotated[str | None, Header(description="Bearer <inbox token>")] = None,
    token: Annotated[str | None, Query(description="Inbox token, for EventSource clients "
                                        "that cannot set headers")] = None,
) -> CustomerAuth:
    """FastAPI dependency: the customer of the inbox token (header, or ``?token=``)."""
    master = get_settings().inbox_token_secret
    if master is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the inbox is not configured (RSN_INBOX_TOKEN_SECRET unset)")
    raw = _bearer(authorization) or token
    if not raw:
        raise _unauthorized("missing inbox token: send 'Authorization: Bearer <token>' "
                            "or '?token=<token>'")
    try:
        ident = verify_inbox_token(raw, master.get_secret_value())
    except InvalidInboxToken as exc:
        raise _unauthorized(str(exc)) from None
    with session_scope() as session:
        tenant_id = tenant_id_for_slug(session, ident.tenant)
    if tenant_id is None:
        raise _unauthorized("inbox token names an unknown tenant")
    return CustomerAuth(tenant_id, ident.tenant, ident.customer_id, ident.expires_at)


Tenant = Annotated[TenantAuth, Depends(require_tenant)]
Customer = Annotated[CustomerAuth, Depends(require_customer)]
