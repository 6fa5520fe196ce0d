"""Unit tests of the API's pure parts: tokens, keywords, addresses, event validation."""

from __future__ import annotations

import time

import pytest
from fastapi import HTTPException

from return_notify.api.auth import KEY_SCHEME, _new_key, hash_key
from return_notify.api.events import MAX_EVENTS, validate_events
from return_notify.api.webhooks import keyword
from return_notify.inbox import (
    InvalidInboxToken,
    mint_inbox_token,
    tenant_inbox_secret,
    verify_inbox_token,
)
from return_notify.pipeline.feedback import _delivery_id, _pmid, _suppression_reason
from return_notify.policy.suppression import (
    InvalidTokenError,
    make_unsubscribe_token,
    normalise_address,
    read_unsubscribe_token,
)

MASTER = "master"


def _ev(tenant: str = "acme", **over: object) -> dict[str, object]:
    ev: dict[str, object] = {"event_id": "e1", "tenant": tenant, "return_id": "R1",
                             "milestone": "return_approved",
                             "occurred_at": "2026-01-01T10:00:00+00:00", "customer": {"id": "c"}}
    ev.update(over)
    return ev


# ------------------------------------------------------------------ inbox tokens --------

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


# ------------------------------------------------------------------ unsubscribe tokens --

def test_unsubscribe_token_hides_the_address_and_round_trips() -> None:
    token = make_unsubscribe_token("acme", "email", " Ana.Smith@Example.COM", "s3cret")
    assert "ana" not in token.lower() and "example" not in token.lower()
    target = read_unsubscribe_token(token, "s3cret")
    assert (target.tenant, target.channel, target.address) == ("acme", "email",
                                                               "ana.smith@example.com")


@pytest.mark.parametrize("token", ["", "u1.", "u1.!!!", "x1.abcdefgh", "u1." + "A" * 60])
def test_bad_unsubscribe_tokens(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_unsubscribe_token(token, "s3cret")


def test_unsubscribe_token_with_another_secret_is_rejected() -> None:
    with pytest.raises(InvalidTokenError):
        read_unsubscribe_token(make_unsubscribe_token("a", "email", "x@y.z", "one"), "two")


# ------------------------------------------------------------------ SMS keywords --------

@pytest.mark.parametrize("body,expected", [
    ("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("stopall", "stop"),
    ("Unsubscribe", "stop"), ("cancel", "stop"), ("END", "stop"), ("quit", "stop"),
    ("stop texting me", "stop"), ("START", "start"), ("yes", "start"), ("unstop", "start"),
    ("help", "help"), ("INFO", "help"), ("yes please", None), ("where is my refund", None),
    ("", None), ("help me stop", None),
])
def test_keywords(body: str, expected: str | None) -> None:
    assert keyword(body) == expected


@pytest.mark.parametrize("channel,raw,expected", [
    ("email", " Ana@Example.COM ", "ana@example.com"),
    ("sms", "+1 (415) 555-0123", "+14155550123"),
    ("inapp", " c-1 ", "c-1"),
])
def test_normalise_address(channel: str, raw: str, expected: str) -> None:
    assert normalise_address(channel, raw) == expected


# ------------------------------------------------------------------ API keys ------------

def test_api_keys_are_random_and_only_hashes_are_kept() -> None:
    (p1, k1), (p2, k2) = _new_key(), _new_key()
    assert k1 != k2 and p1 != p2
    scheme, prefix, secret = k1.split("_")
    assert scheme == KEY_SCHEME and prefix == p1 and len(secret) == 48
    assert len(hash_key(k1)) == 64 and secret not in hash_key(k1)


# ------------------------------------------------------------------ event validation ----

def test_validate_events_accepts_one_object_or_an_array() -> None:
    assert [p["event_id"] for p in validate_events(_ev(), "acme")] == ["e1"]
    assert len(validate_events([_ev(event_id="a"), _ev(event_id="b")], "acme")) == 2


def test_validate_events_foreign_tenant_is_403() -> None:
    with pytest.raises(HTTPException) as info:
        validate_events([_ev(), _ev(tenant="other")], "acme")
    assert info.value.status_code == 403 and "index 1" in str(info.value.detail)


def test_validate_events_collects_every_bad_event() -> None:
    with pytest.raises(HTTPException) as info:
        validate_events([_ev(milestone="nope"), _ev(), "{\"event_id\": \"x\"}", 5], "acme")
    assert info.value.status_code == 422
    assert [d["index"] for d in info.value.detail] == [0, 2, 3]  # type: ignore[union-attr]


def test_validate_events_limits() -> None:
    for body in ([], [_ev()] * (MAX_EVENTS + 1)):
        with pytest.raises(HTTPException) as info:
            validate_events(body, "acme")
        assert info.value.status_code == 422


# ------------------------------------------------------------------ SendGrid mapping ----

def test_sendgrid_event_mapping() -> None:
    assert _pmid({"sg_message_id": "abc123.filterdrecv-p3.1"}) == "abc123"
    assert _delivery_id({"delivery_id": "42"}) == 42
    assert _delivery_id({"delivery_id": 42}) == 42
    assert _delivery_id({"delivery_id": "x"}) is None
    assert _delivery_id({"delivery_id": True}) is None
    assert _suppression_reason("bounce", {"type": "bounce"}) == "hard_bounce"
    assert _suppression_reason("bounce", {"type": "blocked"}) is None
    assert _suppression_reason("dropped", {"reason": "Bounced Address"}) == "hard_bounce"
    assert _suppression_reason("dropped", {"reason": "Invalid"}) is None
    assert _suppression_reason("group_unsubscribe", {}) == "unsubscribe"
    assert _suppression_reason("open", {}) is None
