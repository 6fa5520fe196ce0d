"""Verified test recipients: the only addresses a template test send may go to.

A test send puts a tenant's (possibly unsaved) draft in front of a real inbox or phone, so
it may only go to an address someone of the tenant proved they own: a six-digit code is
sent to it (``start_verification``), and entered back (``confirm``) within 15 minutes and
five tries. Operators on the command line add addresses as verified directly
(``add_verified``). Even a verified address gets no test message while it is on the
suppression list (``pipeline.test_sends`` checks both before every send).

Plain functions on a ``Session`` the caller owns. Addresses are stored normalised
(``return_notify.addresses``); codes are stored as salted SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.addresses import normalize_email, normalize_phone

__all__ = ["CODE_TTL_S", "MAX_ATTEMPTS", "TestRecipientView", "VerificationError",
           "add_verified", "confirm", "is_verified", "list_recipients", "normalise",
           "remove", "start_verification"]

CODE_TTL_S = 900
MAX_ATTEMPTS = 5


class VerificationError(ValueError):
    """The code is wrong, expired or used up; the message says which."""


@dataclass(frozen=True)
class TestRecipientView:
    id: int
    channel: str
    address: str
    verified: bool
    verified_at: datetime | None
    created_by: str | None
    created_at: datetime

    __test__ = False  # not a pytest test class, whatever its name

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "address": self.address,
                "verified": self.verified, "verified_at": self.verified_at,
                "created_by": self.created_by, "created_at": self.created_at}


def normalise(channel: str, address: str) -> str:
    """The stored form of ``address`` (an email lower-cased as a whole, as the suppression
    list keys it); raises ``ValueError`` with the reason."""
    if channel == "email":
        return normalize_email(address).lower()
    if channel == "sms":
        return normalize_phone(address)
    raise ValueError("test recipients are email addresses or phone numbers (channel email "
                     "or sms)")


def _hash(salt: str, code: str) -> str:
    return salt + "$" + hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


_UPSERT = text("""
INSERT INTO test_recipients (tenant_id, channel, address, code_hash, code_expires_at, attempts,
                             created_by)
VALUES (:t, :channel, :address, :hash, now() + make_interval(secs => :ttl), 0, :actor)
ON CONFLICT ON CONSTRAINT uq_test_recipients_address DO UPDATE
SET code_hash = EXCLUDED.code_hash, code_expires_at = EXCLUDED.code_expires_at, attempts = 0
RETURNING id, verified_at
""")


def start_verification(session: Session, tenant_id: int, channel: str, address: str,
                       actor: str | None) -> tuple[int, str, bool]:
    """A fresh code for ``address`` (replacing any earlier one): ``(id, code, already
    verified)``. The caller sends the code to the address, never anywhere else."""
    addr = normalise(channel, address)
    code = f"{secrets.randbelow(10**6):06d}"
    row = session.execute(_UPSERT, {"t": tenant_id, "channel": channel, "address": addr,
                                    "hash": _hash(secrets.token_hex(8), code),
                                    "ttl": CODE_TTL_S, "actor": (actor or "")[:128] or None}
                          ).one()
    return int(row.id), code, row.verified_at is not None


def confirm(session: Session, tenant_id: int, channel: str, address: str, code: str) -> None:
    """Mark ``address`` verified if ``code`` is its current one; ``VerificationError`` if not."""
    addr = normalise(channel, address)
    row = session.execute(text(
        "SELECT id, code_hash, code_expires_at, attempts, now() AS now FROM test_recipients "
        "WHERE tenant_id = :t AND channel = :c AND address = :a FOR UPDATE"),
        {"t": tenant_id, "c": channel, "a": addr}).first()
    if row is None or row.code_hash is None:
        raise VerificationError("no code was sent to this address: ask for one first")
    if row.attempts >= MAX_ATTEMPTS:
        raise VerificationError(f"{MAX_ATTEMPTS} wrong codes: ask for a new one")
    if row.code_expires_at is None or row.code_expires_at < row.now:
        raise VerificationError("the code has expired: ask for a new one")
    salt = row.code_hash.split("$", 1)[0]
    given = code.strip() if isinstance(code, str) else ""
    if not hmac.compare_digest(_hash(salt, given), row.code_hash):
        session.execute(text("UPDATE test_recipients SET attempts = attempts + 1 WHERE id = :i"),
                        {"i": row.id})
        raise VerificationError("wrong code")
    session.execute(text(
        "UPDATE test_recipients SET verified_at = now(), code_hash = NULL, "
        "code_expires_at = NULL, attempts = 0 WHERE id = :i"), {"i": row.id})


def add_verified(session: Session, tenant_id: int, channel: str, address: str,
                 actor: str | None) -> int:
    """Add ``address`` as verified without a code (operators on the command line)."""
    addr = normalise(channel, address)
    return int(session.execute(text("""
        INSERT INTO test_recipients (tenant_id, channel, address, verified_at, created_by)
        VALUES (:t, :c, :a, now(), :actor)
        ON CONFLICT ON CONSTRAINT uq_test_recipients_address DO UPDATE
        SET verified_at = coalesce(test_recipients.verified_at, now()), code_hash = NULL,
            code_expires_at = NULL, attempts = 0
        RETURNING id"""), {"t": tenant_id, "c": channel, "a": addr,
                          "actor": (actor or "")[:128] or None}).scalar_one())


def is_verified(session: Session, tenant_id: int, channel: str, address: str) -> bool:
    """True when ``address`` (already normalised) is a verified test recipient."""
    return session.execute(text(
        "SELECT 1 FROM test_recipients WHERE tenant_id = :t AND channel = :c AND address = :a "
        "AND verified_at IS NOT NULL"), {"t": tenant_id, "c": channel, "a": address}
    ).first() is not None


def list_recipients(session: Session, tenant_id: int) -> list[TestRecipientView]:
    rows = session.execute(text(
        "SELECT id, channel, address, verified_at, created_by, created_at FROM test_recipients "
        "WHERE tenant_id = :t ORDER BY channel, address"), {"t": tenant_id}).all()
    return [TestRecipientView(r.id, r.channel, r.address, r.verified_at is not None,
                              r.verified_at, r.created_by, r.created_at) for r in rows]


def remove(session: Session, tenant_id: int, recipient_id: int) -> bool:
    result = session.execute(text("DELETE FROM test_recipients WHERE tenant_id = :t AND id = :i"),
                             {"t": tenant_id, "i": recipient_id})
    return bool(result.rowcount)  # type: ignore[attr-defined]

