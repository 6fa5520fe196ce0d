"""API keys: random, one scheme for tenant and principal keys, only hashes kept."""

from __future__ import annotations

import pytest

from return_notify.access.keys import hash_key, key_matches, key_prefix, new_key
from return_notify.access.tenant_keys import KEY_SCHEME


def test_api_keys_are_random_and_only_hashes_are_kept() -> None:
    (p1, k1), (p2, k2) = new_key(KEY_SCHEME), new_key(KEY_SCHEME)
    assert k1 != k2 and p1 != p2
    scheme, prefix, secret = k1.split("_")
    assert scheme == KEY_SCHEME and prefix == p1 and len(secret) == 48
    assert len(hash_key(k1)) == 64 and secret not in hash_key(k1)
    assert key_matches(hash_key(k1), k1) and not key_matches(hash_key(k1), k2)


@pytest.mark.parametrize("key", ["", "rsn", "rsn__x", "rsnp_abc_def", "rsn_a_b_c",
                                 "rsn_abc_" + "x" * 300, "Bearer rsn_abc_def"])
def test_malformed_keys_have_no_prefix(key: str) -> None:
    assert key_prefix(key, KEY_SCHEME) is None


def test_tenant_and_principal_keys_share_one_scheme_but_not_prefixes() -> None:
    from return_notify.access.principals import KEY_SCHEME as PRINCIPAL_SCHEME

    prefix, key = new_key(PRINCIPAL_SCHEME)
    assert key_prefix(key, PRINCIPAL_SCHEME) == prefix
    assert key_prefix(key, KEY_SCHEME) is None  # an admin key is never an ingest key
