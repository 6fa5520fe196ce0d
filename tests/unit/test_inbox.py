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
