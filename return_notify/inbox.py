"""The in-app inbox: customer inbox tokens, inbox queries and the live-update channel name.

Retailers' backends mint a short-lived token per signed-in customer and hand it to their
app, which calls ``GET /v1/inbox`` and listens on ``GET /v1/inbox/stream``.

Token format (reproducible in any language)::

    i1.<b64url(JSON {"t": tenant, "c": customer_id, "exp": unix seconds})>.<b64url(MAC)>
    MAC = HMAC-SHA256(key=tenant_secret, msg="i1." + <payload part>)

``tenant_secret`` is per tenant (``return-notify inbox secret --tenant T``), derived from
``RSN_INBOX_TOKEN_SECRET``, so one tenant's backend cannot mint another tenant's tokens.
Base64url is without padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_PREFIX = "i1."
MAX_PAGE = 100


# ------------------------------------------------------------------ tokens -------------

@dataclass(frozen=True)
class InboxIdentity:
    tenant: str
    customer_id: str
    expires_at: int


class InvalidInboxToken(ValueError):
    """The token is malformed, forged or expired; the message says which, for the client."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def tenant_inbox_secret(master_secret: str, tenant: str) -> str:
    """The secret a tenant's backend uses to mint inbox tokens, derived from the master."""
    return hmac.new(master_secret.encode(), f"return-notify/inbox/v1/{tenant}".encode(),
                    hashlib.sha256).hexdigest()


#: the longest lifetime a token may have unless the verifier says otherwise (one day)
MAX_TTL_S = 86_400


def mint_inbox_token(tenant: str, customer_id: str, ttl_s: int, secret: str,
                     *, now: float | None = None, max_ttl_s: int = MAX_TTL_S) -> str:
    """Mint a token that lets one customer of ``tenant`` read their inbox for ``ttl_s``
    (at most ``max_ttl_s``: the API refuses tokens that live longer).

    ``secret`` is the tenant's inbox secret (``tenant_inbox_secret``), never the master.
    """
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if ttl_s > max_ttl_s:
        raise ValueError(f"ttl_s must be at most {max_ttl_s} s (the maximum token lifetime)")
    exp = int((now if now is not None else time.time()) + ttl_s)
    payload = _b64(json.dumps({"t": tenant, "c": customer_id, "exp": exp},
                              separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), (_PREFIX + payload).encode(), hashlib.sha256).digest()
    return f"{_PREFIX}{payload}.{_b64(mac)}"


def verify_inbox_token(token: str, master_secret: str, *, now: float | None = None,
                       max_ttl_s: int = MAX_TTL_S) -> InboxIdentity:
    """Check a token's MAC (with the tenant secret derived from the master), its expiry,
    and that it expires within ``max_ttl_s`` from now (a token minted to live for years is
    refused, not honoured)."""
    if not token.startswith(_PREFIX) or token.count(".") != 2 or len(token) > 2048:
        raise InvalidInboxToken("malformed inbox token")
    payload, _, mac = token[len(_PREFIX):].partition(".")
    try:
        claims = json.loads(_unb64(payload))
        tenant, customer, exp = claims["t"], claims["c"], claims["exp"]
        given = _unb64(mac)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidInboxToken("malformed inbox token") from exc
    # exact types: exp 1e999 (infinity), 1.5 or "9" is malformed, not a crash
    if not (isinstance(tenant, str) and type(customer) in (str, int) and type(exp) is int
            and 0 < exp < 2**63):
        raise InvalidInboxToken("malformed inbox token")
    customer = str(customer)
    secret = tenant_inbox_secret(master_secret, tenant)
    expected = hmac.new(secret.encode(), (_PREFIX + payload).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise InvalidInboxToken("inbox token signature is invalid")
    current = now if now is not None else time.time()
    if exp < current:
        raise InvalidInboxToken("inbox token has expired; mint a new one")
    if exp > current + max_ttl_s:
        raise InvalidInboxToken(f"inbox token lives longer than the maximum of {max_ttl_s} s; "
                                "mint one with a shorter lifetime")
    return InboxIdentity(tenant, customer, exp)


# ------------------------------------------------------------------ live updates -------

def inbox_channel_name(key_prefix: str, tenant: str, customer_id: str) -> str:
    """The Redis pub/sub channel on which new items for one customer are announced."""
    return f"{key_prefix}inbox:{tenant}:{customer_id}"


def item_json(row: Any) -> dict[str, Any]:
    """The public JSON shape of one inbox item (API responses and live messages)."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(row.id), "title": row.title, "body": row.body, "cta_url": row.cta_url,
        "milestone": row.milestone, "return_id": row.return_id,
        "created_at": iso(row.created_at), "read_at": iso(row.read_at),
    }


# ------------------------------------------------------------------ queries ------------

_COLUMNS = "id, title, body, cta_url, milestone, return_id, created_at, read_at"


def list_items(
    session: Session, tenant_id: int, customer_id: str, *, limit: int = 20,
    before_id: int | None = None, unread_only: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; returns the page and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    where = "tenant_id = :tid AND customer_id = :cid"
    params: dict[str, Any] = {"tid": tenant_id, "cid": customer_id, "n": limit + 1}
    if before_id is not None:
        where += " AND id < :before"
        params["before"] = before_id
    if unread_only:
        where += " AND read_at IS NULL"
    rows = session.execute(text(
        f"SELECT {_COLUMNS} FROM inbox_items WHERE {where} ORDER BY id DESC LIMIT :n"
    ), params).all()
    items = [item_json(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


def unread_count(session: Session, tenant_id: int, customer_id: str) -> int:
    return int(session.execute(text(
        "SELECT count(*) FROM inbox_items "
        "WHERE tenant_id = :tid AND customer_id = :cid AND read_at IS NULL"
    ), {"tid": tenant_id, "cid": customer_id}).scalar() or 0)


def mark_read(session: Session, tenant_id: int, customer_id: str, item_id: int
              ) -> dict[str, Any] | None:
    """Mark one item read (idempotent: the first read time is kept); None if not theirs."""
    row = session.execute(text(
        f"UPDATE inbox_items SET read_at = coalesce(read_at, now()) "
        f"WHERE id = :id AND tenant_id = :tid AND customer_id = :cid RETURNING {_COLUMNS}"
    ), {"id": item_id, "tid": tenant_id, "cid": customer_id}).first()
    return item_json(row) if row is not None else None


def mark_all_read(session: Session, tenant_id: int, customer_id: str) -> int:
    result = session.execute(text(
        "UPDATE inbox_items SET read_at = now() "
        "WHERE tenant_id = :tid AND customer_id = :cid AND read_at IS NULL"
    ), {"tid": tenant_id, "cid": customer_id})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
