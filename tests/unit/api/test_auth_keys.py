"""Tenant API keys: random, and only their hashes are kept."""

from __future__ import annotations

from return_notify.api.auth import KEY_SCHEME, _new_key, hash_key


def test_api_keys_are_random_and_only_hashes_are_kept() -> None:
    (p1, k1), (p2, k2) = _new_key(), _new_key()
    assert k1 != k2 and p1 != p2
    scheme, prefix, secret = k1.split("_")
    assert scheme == KEY_SCHEME and prefix == p1 and len(secret) == 48
    assert len(hash_key(k1)) == 64 and secret not in hash_key(k1)
