"""Recipients are parsed and normalised before they are stored, sent to or looked up:
the trailing line break, the address in angle brackets and the non-ASCII digits that used
to pass the contract's patterns are refused, and every spelling of an address is one key."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from return_notify.addresses import AddressError, address_key, normalize_email, normalize_phone
from return_notify.errors import EventValidationError
from return_notify.events import parse_event


def _event(**customer: Any) -> dict[str, Any]:
    return {"event_id": "e-1", "tenant": "acme", "return_id": "R-1",
            "milestone": "return_approved", "occurred_at": "2026-01-02T03:04:05+00:00",
            "customer": {"id": "c-1", **customer}}


@pytest.mark.parametrize("value", [
    "ana@example.com\n",            # ended the SMTP header block after To:
    "ana@example.com\r\nBcc: x@evil.example",
    "a<x@evil.example>",            # delivered to x@evil.example past its suppressions
    "Ana <ana@example.com>",
    "ana@example.com, x@evil.example",
    "(comment)ana@example.com",
    '"a b"@example.com',
    "ana@localhost",
    "ana@1.2.3.4",
    "anä@example.com",
    "ana@exa\u0000mple.com",
    "ana@@example.com",
    "a" * 65 + "@example.com",
])
def test_the_contract_refuses_addresses_that_are_not_one_plain_address(value: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(_event(email=value))
    assert info.value.errors[0]["field"] == "customer.email"
    with pytest.raises(AddressError):
        normalize_email(value)


@pytest.mark.parametrize("value", [
    "+1415555\u0661\u0662\u0663\u0664",  # Arabic-Indic digits matched \d
    "+14155550123\n",
    "+1 415 555 0123",
    "+01234567890",
    "14155550123",
    "+1415555012345678",
])
def test_the_contract_refuses_numbers_that_are_not_e164_in_ascii(value: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(_event(phone=value))
    assert info.value.errors[0]["field"] == "customer.phone"


def test_the_contract_stores_the_normalised_form() -> None:
    event = parse_event(_event(email=" Ana.Lopez+returns@Example.COM ",
                               phone="\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10"
                                     "\uff11\uff12\uff13"))
    assert event.customer.email == "Ana.Lopez+returns@example.com"
    assert event.customer.phone == "+14155550123"


@pytest.mark.parametrize(("given", "key"), [
    ("Ana@Example.com", "ana@example.com"),
    ("\uff41na@example.com", "ana@example.com"),   # full-width a (NFKC)
    ("ana@example.com\n", "ana@example.com"),
    ("a<x@evil.example>", "x@evil.example"),      # the address a transport would use
    ("x@evil.example", "x@evil.example"),
])
def test_suppression_keys_are_the_address_a_provider_would_deliver_to(given: str, key: str) -> None:
    assert address_key("email", given) == key


def test_phone_keys_drop_punctuation_and_control_characters() -> None:
    assert address_key("sms", "+1 (415) 555-0123") == "+14155550123"
    assert address_key("sms", "+14155550123\x00") == "+14155550123"
    assert normalize_phone("\uff0b14155550123") == "+14155550123"


def test_branding_and_principal_names_are_one_line() -> None:
    from return_notify.access.principals import PrincipalError, validate_principal
    from return_notify.templating.branding import BrandingUpdate

    with pytest.raises(PrincipalError):
        validate_principal("ops-bot\nFORGED audit line", "viewer", [], [])
    with pytest.raises(PrincipalError):
        validate_principal("ops-bot\n", "viewer", [], [])
    with pytest.raises(ValueError, match="email"):
        BrandingUpdate(support_email="help@acme.example\nBcc: x@evil.example")
    assert BrandingUpdate(support_email="Help@ACME.example").support_email == "Help@acme.example"


_ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3),
       st.lists(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?", fullmatch=True),
                min_size=2, max_size=4))
def test_the_fast_path_agrees_with_the_rfc_5322_parser(atoms: list[str], labels: list[str]) -> None:
    from return_notify.addresses import _parsed_email

    address = ".".join(atoms) + "@" + ".".join(labels)
    try:
        expected: str | None = _parsed_email(address)
    except AddressError:
        expected = None
    try:
        got: str | None = normalize_email(address)
    except AddressError:
        got = None
    assert got == expected, address
