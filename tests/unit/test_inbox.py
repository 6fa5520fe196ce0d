"""Inbox tokens (``return_notify.inbox``): round trip, tampering, another tenant's secret, expiry."""

from __future__ import annotations

import time

import pytest

from return_notify.inbox import (
    InvalidInboxToken,
    mint_inbox_token,
    tenant_inbox_secret,
    verify_inbox_token,
)

MASTER = "master"


def test_inbox_token_round_trip() -> None:
    token = mint_inbox_token("acme", "c:1/é", 60, tenant_inbox_secret(MASTER, "acme"))
    ident = verify_inbox_token(token, MASTER)
    assert (ident.tenant, ident.customer_id) == ("acme", "c:1/é")
    assert ident.expires_at > time.time()


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], "signature"),
    (lambda t: t.replace("i1.", "i2.", 1), "malformed"),
    (lambda t: t + ".x", "malformed"),
    (lambda t: "", "malformed"),
])
def test_altered_inbox_tokens_are_rejected(mutate, message) -> None:  # type: ignore[no-untyped-def]
    token = mint_inbox_token("acme", "c", 60, tenant_inbox_secret(MASTER, "acme"))
    with pytest.raises(InvalidInboxToken, match=message):
        verify_inbox_token(mutate(token), MASTER)


def test_a_tenant_secret_cannot_mint_for_another_tenant() -> None:
    token = mint_inbox_token("victim", "c", 60, tenant_inbox_secret(MASTER, "attacker"))
    with pytest.raises(InvalidInboxToken, match="signature"):
        verify_inbox_token(token, MASTER)


def test_expired_inbox_token_is_rejected() -> None:
    token = mint_inbox_token("acme", "c", 60, tenant_inbox_secret(MASTER, "acme"), now=1000.0)
    with pytest.raises(InvalidInboxToken, match="expired"):
        verify_inbox_token(token, MASTER, now=1061.0)
    assert verify_inbox_token(token, MASTER, now=1059.0).customer_id == "c"


def _signed(claims: dict[str, object], tenant: str = "acme") -> str:
    """A token with exactly these claims, correctly signed (as a careless minter might)."""
    import base64
    import hashlib
    import hmac
    import json

    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    mac = hmac.new(tenant_inbox_secret(MASTER, tenant).encode(), f"i1.{payload}".encode(),
                   hashlib.sha256).digest()
    return f"i1.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize("exp", [1e999, -1e999, 1.5e9, "9999999999", True, None, 2**70])
def test_a_token_whose_expiry_is_not_an_integer_is_malformed_not_a_crash(exp: object) -> None:
    # exp 1e999 decodes to infinity: int() of it raised OverflowError, an API 500
    token = _signed({"t": "acme", "c": "c-1", "exp": exp})
    with pytest.raises(InvalidInboxToken, match="malformed"):
        verify_inbox_token(token, MASTER, now=1000.0)


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    far = _signed({"t": "acme", "c": "c-1", "exp": 1000 + 10 * 86_400})
    with pytest.raises(InvalidInboxToken, match="longer than the maximum"):
        verify_inbox_token(far, MASTER, now=1000.0)
    assert verify_inbox_token(far, MASTER, now=1000.0, max_ttl_s=11 * 86_400).tenant == "acme"
    with pytest.raises(ValueError, match="at most"):
        mint_inbox_token("acme", "c", 2 * 86_400, tenant_inbox_secret(MASTER, "acme"))
