"""Recipient addresses, parsed and normalised once: email addresses and E.164 numbers
(public: producers may check addresses with the same rules before publishing).

Every address the system stores, sends to or looks up on the suppression list goes through
here first, so one spelling of an address is one key:

* text is NFKC-normalised (full-width ``＋１４１５…`` becomes ``+1415…``), surrounding spaces
  and tabs are dropped, and what is left must be ASCII without control characters (a line
  break in an address would end an SMTP header block);
* an email address is parsed with the standard library's RFC 5322 parser
  (``email.headerregistry.Address``), must round-trip unchanged (no display name, comment,
  angle brackets or second address), its local part must be a dot-atom (quoted local parts
  are refused) and its domain host names; the domain is lower-cased;
* a phone number must match E.164 exactly (``+`` then 7 to 15 ASCII digits, no leading 0).

Pure functions, standard library only (producers import the event contract, which uses them).
"""

from __future__ import annotations

import re
import unicodedata
from email.errors import HeaderParseError, MessageDefect
from email.headerregistry import Address

__all__ = ["AddressError", "address_key", "normalize_email", "normalize_phone"]

MAX_EMAIL_CHARS = 254
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*", re.ASCII)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+", re.ASCII)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
_PHONE_PUNCTUATION = re.compile(r"[ \t().\-]", re.ASCII)


class AddressError(ValueError):
    """The address cannot be used; the message says why, for the person who sent it."""


def _clean(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise AddressError(f"{what} must be a string")
    if value.isascii():  # the common case: NFKC leaves ASCII as it is
        text = value.strip(" \t")
        if text and text.isprintable():  # no control character (line breaks, tabs, NUL)
            return text
    text = unicodedata.normalize("NFKC", value).strip(" \t")
    if not text:
        raise AddressError(f"{what} is empty")
    if any(unicodedata.category(c).startswith(("C", "Z")) and c != " " for c in text) or \
            "\n" in text or "\r" in text:
        raise AddressError(f"{what} contains a line break or another control character")
    if not text.isascii():
        raise AddressError(f"{what} must be ASCII" + (
            " (internationalised addresses are not supported)" if "email" in what
            else ": digits 0-9"))
    return text


def normalize_email(value: object) -> str:
    """The canonical form of an email address (domain lower-cased); raises ``AddressError``."""
    text = _clean(value, "the email address")
    if len(text) > MAX_EMAIL_CHARS:
        raise AddressError(f"the email address is longer than {MAX_EMAIL_CHARS} characters")
    if " " in text:
        raise AddressError("the email address contains a space")
    local, at, domain = text.partition("@")
    if (at and len(local) <= 64 and _LOCAL.fullmatch(local) and _DOMAIN.fullmatch(domain)
            and not domain.rsplit(".", 1)[1].isdigit()):
        # a dot-atom and host names: what the RFC 5322 parser below accepts unchanged, so
        # the common address skips it (the parser is for everything else, and its errors)
        return f"{local}@{domain.lower()}"
    return _parsed_email(text)


def _parsed_email(text: str) -> str:
    """``normalize_email`` by the RFC 5322 parser (every address the fast path does not take)."""
    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError, MessageDefect) as exc:
        raise AddressError("not an email address such as ana@example.com") from exc
    local, domain = parsed.username, parsed.domain
    if parsed.addr_spec != text or not _LOCAL.fullmatch(local) or len(local) > 64:
        raise AddressError("not an email address such as ana@example.com (one plain "
                           "address: no name, brackets, comments or quotes)")
    if not _DOMAIN.fullmatch(domain) or domain.rsplit(".", 1)[1].isdigit():
        raise AddressError("the email address needs a domain name such as example.com")
    return f"{local}@{domain.lower()}"


def normalize_phone(value: object) -> str:
    """The E.164 form of a phone number; raises ``AddressError``."""
    text = _clean(value, "the phone number")
    if not _E164.fullmatch(text):
        raise AddressError("must be an E.164 number such as +14155550123")
    return text


def address_key(channel: str, address: str) -> str:
    """The suppression-list key of ``address`` on ``channel``, for any input.

    A valid address gives its canonical form (email lower-cased as a whole: providers treat
    local parts case-insensitively). An address that does not parse still gets a key, the
    one a provider would deliver to: the email in angle brackets of ``a<x@evil.example>``
    (so such a row, stored before addresses were checked, is matched against
    ``x@evil.example``'s suppressions), or a number's digits without punctuation.
    """
    if channel == "email":
        try:
            return normalize_email(address).lower()
        except AddressError:
            from email.utils import getaddresses

            text = _printable(address)
            found = [a for _, a in getaddresses([text]) if "@" in a]
            return (found[-1] if found else text).strip().lower()
    if channel == "sms":
        try:
            return normalize_phone(address)
        except AddressError:
            return _PHONE_PUNCTUATION.sub("", _printable(address)).strip()
    return _printable(address).strip()


def _printable(value: str) -> str:
    """NFKC ``value`` without control characters (a NUL cannot even be a query parameter)."""
    text = unicodedata.normalize("NFKC", value)
    return "".join(c for c in text if not unicodedata.category(c).startswith("C"))
