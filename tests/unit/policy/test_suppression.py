"""Unsubscribe tokens hide the address and round-trip; addresses are normalised per channel."""

from __future__ import annotations

import pytest

from return_notify.policy.suppression import (
    InvalidTokenError,
    make_unsubscribe_token,
    normalise_address,
    read_unsubscribe_token,
)


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


@pytest.mark.parametrize("channel,raw,expected", [
    ("email", " Ana@Example.COM ", "ana@example.com"),
    ("sms", "+1 (415) 555-0123", "+14155550123"),
    ("inapp", " c-1 ", "c-1"),
])
def test_normalise_address(channel: str, raw: str, expected: str) -> None:
    assert normalise_address(channel, raw) == expected
