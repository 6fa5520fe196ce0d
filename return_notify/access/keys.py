"""The one API-key scheme of every key the system issues: ``<scheme>_<prefix>_<secret>``.

Tenant ingest keys use scheme ``rsn``, administrator (principal) keys ``rsnp``. The
12-hex-digit prefix finds the row; only SHA-256 of the whole key is stored (the secret is
192 random bits, so a slow KDF would add latency to every request and no security), and
the comparison is constant-time. A key is shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["MAX_KEY_CHARS", "hash_key", "key_matches", "key_prefix", "new_key"]

#: longer "keys" are refused before any lookup (no hashing of attacker-sized input)
MAX_KEY_CHARS = 200


def hash_key(key: str) -> str:
    """What is stored of a key: hex SHA-256 of the whole key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(scheme: str) -> tuple[str, str]:
    """A fresh ``(prefix, key)`` of ``scheme``."""
    prefix = secrets.token_hex(6)
    return prefix, f"{scheme}_{prefix}_{secrets.token_hex(24)}"


def key_prefix(key: str, scheme: str) -> str | None:
    """The lookup prefix of a well-formed ``scheme`` key, else None (never raises)."""
    if not key or len(key) > MAX_KEY_CHARS:
        return None
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != scheme or not parts[1] or not parts[2]:
        return None
    return parts[1]


def key_matches(stored_hash: str, key: str) -> bool:
    """Constant-time check of ``key`` against a stored ``hash_key`` value."""
    return hmac.compare_digest(stored_hash, hash_key(key))
