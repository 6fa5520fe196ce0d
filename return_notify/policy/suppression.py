"""The suppression list: who must not be messaged on which channel, and unsubscribe tokens.

Plain functions on a SQLAlchemy ``Session`` (the caller owns the transaction), used by the
HTTP feedback endpoints and by the deliver pipeline's pre-send check.

Matching rules, per channel and normalised address (lowercased email, E.164 number):

* a row with ``tenant_id`` NULL applies to every tenant (SMS STOP on a shared sender);
* a row with ``sender`` NULL applies to every sender; a row with a sender applies only when
  the caller passes that sender, or passes ``sender=None`` ("I don't know": be safe).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.addresses import address_key
from return_notify.storage.models import STOP, SUPPRESSION_REASONS
from return_notify.storage.statements import Statement


def normalise_address(channel: str, address: str) -> str:
    """The list's key of ``address``: ``addresses.address_key`` (the parsed, NFKC and
    lower-cased email, or the address a provider would deliver to when it does not parse;
    E.164 for SMS), so every spelling of one address is one key."""
    return address_key(channel, address)


_LOOKUP = text("""
SELECT reason FROM suppressions
WHERE channel = :channel AND address = :address
  AND (tenant_id = :tenant_id OR tenant_id IS NULL)
  AND (sender IS NULL OR CAST(:sender AS text) IS NULL OR sender = CAST(:sender AS text))
ORDER BY created_at, id
LIMIT 1
""")

#: Many (channel, tenant, address, sender) keys in one query: every channel of a claim at once.
_BATCH_LOOKUP = Statement("""
SELECT DISTINCT ON (k.ch, k.tid, k.addr) k.ch, k.tid, k.addr, s.reason
FROM unnest(CAST(:chs AS text[]), CAST(:tids AS int[]), CAST(:addrs AS text[]),
            CAST(:senders AS text[])) AS k(ch, tid, addr, sender)
JOIN suppressions s
  ON s.channel = k.ch AND s.address = k.addr
 AND (s.tenant_id = k.tid OR s.tenant_id IS NULL)
 AND (s.sender IS NULL OR k.sender IS NULL OR s.sender = k.sender)
ORDER BY k.ch, k.tid, k.addr, s.created_at, s.id
""")

_INSERT = text("""
INSERT INTO suppressions (tenant_id, channel, address, sender, reason, source)
VALUES (:tenant_id, :channel, :address, :sender, :reason, :source)
ON CONFLICT ((coalesce(tenant_id, 0)), channel, address, (coalesce(sender, '')))
DO NOTHING
RETURNING id
""")


def is_suppressed(
    session: Session, tenant_id: int, channel: str, address: str, sender: str | None = None
) -> str | None:
    """The reason ``address`` must not be messaged by this tenant on ``channel``, or None."""
    return session.execute(_LOOKUP, {
        "tenant_id": tenant_id, "channel": channel,
        "address": normalise_address(channel, address), "sender": sender,
    }).scalar()


def suppressed_addresses(
    session: Session,
    tenant_id_address_pairs: Iterable[tuple[int, str]],
    channel: str,
    sender: str | None = None,
) -> dict[tuple[int, str], str]:
    """Batch ``is_suppressed`` in one query: ``{(tenant_id, address as given): reason}``.

    Only suppressed pairs are in the result.
    """
    return suppressed_by_channel(
        session, {channel: (list(tenant_id_address_pairs), sender)}).get(channel, {})


def suppressed_by_channel(
    session: Session,
    wanted: Mapping[str, tuple[Iterable[tuple[int, str]], str | None]],
) -> dict[str, dict[tuple[int, str], str]]:
    """``suppressed_addresses`` for several channels in one query: ``wanted`` maps a channel
    to its (tenant id, address) pairs and its sender; the result maps a channel to its
    suppressed pairs (as given) and their reasons."""
    given: dict[tuple[str, int, str], list[tuple[int, str]]] = {}
    senders: dict[str, str | None] = {}
    for channel, (pairs, sender) in wanted.items():
        senders[channel] = sender
        for tid, addr in pairs:
            if addr:
                key = (channel, tid, normalise_address(channel, addr))
                given.setdefault(key, []).append((tid, addr))
    if not given:
        return {}
    keys = list(given)
    rows = _BATCH_LOOKUP.rows(session, {
        "chs": [k[0] for k in keys], "tids": [k[1] for k in keys],
        "addrs": [k[2] for k in keys], "senders": [senders[k[0]] for k in keys],
    })
    out: dict[str, dict[tuple[int, str], str]] = {}
    for channel, tid, addr, reason in rows:
        for original in given.get((channel, tid, addr), []):
            out.setdefault(channel, {})[original] = reason
    return out


def suppress(
    session: Session,
    tenant_id: int | None,
    channel: str,
    address: str,
    reason: str,
    sender: str | None = None,
    source: str | None = None,
) -> bool:
    """Add a suppression; True if it is new (an existing one for the same key is kept)."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}; one of {SUPPRESSION_REASONS}")
    row = session.execute(_INSERT, {
        "tenant_id": tenant_id, "channel": channel,
        "address": normalise_address(channel, address)[:254],
        "sender": sender[:64] if sender else None, "reason": reason,
        "source": source[:32] if source else None,
    }).first()
    return row is not None


_INSERT_MANY = text("""
INSERT INTO suppressions (tenant_id, channel, address, sender, reason, source)
SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:channels AS text[]), CAST(:addrs AS text[]),
                     CAST(:senders AS text[]), CAST(:reasons AS text[]), CAST(:sources AS text[]))
ON CONFLICT ((coalesce(tenant_id, 0)), channel, address, (coalesce(sender, '')))
DO NOTHING
RETURNING id
""")


@dataclass(frozen=True)
class SuppressionRow:
    tenant_id: int | None
    channel: str
    address: str
    reason: str
    sender: str | None = None
    source: str | None = None


def suppress_many(session: Session, rows: Iterable[SuppressionRow]) -> int:
    """Bulk ``suppress`` in one statement; returns how many suppressions are new."""
    unique: dict[tuple[int, str, str, str], SuppressionRow] = {}
    for r in rows:
        if r.reason not in SUPPRESSION_REASONS:
            raise ValueError(f"unknown suppression reason {r.reason!r}")
        addr = normalise_address(r.channel, r.address)[:254]
        if addr:
            key = (r.tenant_id or 0, r.channel, addr, r.sender or "")
            unique.setdefault(key, SuppressionRow(r.tenant_id, r.channel, addr, r.reason,
                                                  r.sender, r.source))
    if not unique:
        return 0
    vals = list(unique.values())
    result = session.execute(_INSERT_MANY, {
        "tids": [v.tenant_id for v in vals], "channels": [v.channel for v in vals],
        "addrs": [v.address for v in vals],
        "senders": [v.sender[:64] if v.sender else None for v in vals],
        "reasons": [v.reason for v in vals],
        "sources": [v.source[:32] if v.source else None for v in vals],
    }).all()
    return len(result)


def lift(
    session: Session,
    tenant_id: int | None,
    channel: str,
    address: str,
    sender: str | None = None,
    reasons: Iterable[str] = (STOP,),
) -> int:
    """Remove suppressions with one of ``reasons``; returns how many were removed.

    ``tenant_id`` None lifts for every tenant; otherwise the tenant's own rows and the
    all-tenant rows (an SMS START re-opens the number at the carrier for everyone).
    ``sender`` None lifts for every sender. Other reasons (a hard bounce, a manual block)
    are never lifted by this call unless named.
    """
    where = ["channel = :channel", "address = :address", "reason = ANY(CAST(:reasons AS text[]))"]
    params: dict[str, object] = {
        "channel": channel, "address": normalise_address(channel, address),
        "reasons": list(reasons),
    }
    if tenant_id is not None:
        where.append("(tenant_id = :tenant_id OR tenant_id IS NULL)")
        params["tenant_id"] = tenant_id
    if sender is not None:
        where.append("sender = :sender")
        params["sender"] = sender
    result = session.execute(text("DELETE FROM suppressions WHERE " + " AND ".join(where)), params)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ unsubscribe tokens --

_TOKEN_PREFIX = "u1."


@dataclass(frozen=True)
class UnsubscribeTarget:
    tenant: str
    channel: str
    address: str


class InvalidTokenError(ValueError):
    """The token was not issued by us, was altered, or is malformed."""


@lru_cache(maxsize=8)
def _unsubscribe_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"return-notify/unsubscribe/v1", hashlib.sha256).digest()


def make_unsubscribe_token(tenant: str, channel: str, address: str, secret: str) -> str:
    """A URL-safe token for ``/v1/unsubscribe/{token}``.

    Sealed with AES-256-GCM (authenticated like an HMAC, and also encrypted), so the
    recipient's address never appears in links, mail logs or proxy logs.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payload = json.dumps([tenant, channel, normalise_address(channel, address)],
                         separators=(",", ":")).encode()
    nonce = os.urandom(12)
    sealed = AESGCM(_unsubscribe_key(secret)).encrypt(nonce, payload, _TOKEN_PREFIX.encode())
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def read_unsubscribe_token(token: str, secret: str) -> UnsubscribeTarget:
    """Open a token from ``make_unsubscribe_token``; raises ``InvalidTokenError``."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not token.startswith(_TOKEN_PREFIX) or len(token) > 2048:
        raise InvalidTokenError("not an unsubscribe token")
    body = token[len(_TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        payload = AESGCM(_unsubscribe_key(secret)).decrypt(raw[:12], raw[12:],
                                                           _TOKEN_PREFIX.encode())
        tenant, channel, address = json.loads(payload)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise InvalidTokenError("unsubscribe token is invalid or was altered") from exc
    return UnsubscribeTarget(str(tenant), str(channel), str(address))


def unsubscribe_url(
    tenant: str, address: str, *, channel: str = "email",
    public_base_url: str | None = None, secret: str | None = None,
) -> str:
    """The one-click unsubscribe link for an email (``List-Unsubscribe`` header and footer)."""
    if secret is None or public_base_url is None:
        from return_notify.config.settings import get_settings
        from return_notify.errors import ConfigurationError

        if secret is None:
            configured = get_settings().unsubscribe_secret
            if configured is None:
                raise ConfigurationError("RSN_UNSUBSCRIBE_SECRET is not set: cannot sign "
                                         "unsubscribe links")
            secret = configured.get_secret_value()
        public_base_url = public_base_url or get_settings().public_base_url
    token = make_unsubscribe_token(tenant, channel, address, secret)
    return f"{public_base_url.rstrip('/')}/v1/unsubscribe/{token}"
