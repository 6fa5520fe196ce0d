"""Tracked links, rating links and status links in messages: the sealed tokens behind
``/r/{token}`` (a link click, recorded once, then redirected), ``/rate/{token}`` (the
satisfaction page) and ``/s/{token}`` (the return's status page, the default
call-to-action: only someone holding a message of that return can read its status).

A token names *what* was linked, never *where to*: the tenant, the return, the milestone and
channel of the notification, and the language of the message. The redirect finds the
destination in the return's own stored event (see ``pipeline.engagement``), so a token can
never send anyone to a URL of the requester's choosing, and it stays short enough for an
SMS.

Sealing follows the unsubscribe tokens (``policy.suppression``): a key derived from a
server-side secret (``RSN_LINK_SECRET``) and authenticated encryption, so a token cannot be
forged or altered, and the return reference does not show in proxy or mail logs. The cipher
is AES-SIV (RFC 5297): deterministic, so the same link in the same message is the same
string (previews and re-renders are stable), with no nonce to carry: 16 bytes of overhead.

Payload (version 1), before sealing::

    byte 0   version << 4 | kind (1 click, 2 rating, 3 status)
    byte 1   channel index (email 0, sms 1, inapp 2) | language index << 2
    byte 2   milestone index (``MILESTONES``; appended to, never reordered)
    varint   tenant id
    rest     return reference, UTF-8

Pure functions and frozen data: no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CHANNELS", "CLICK", "LANGUAGES", "MILESTONES", "RATING", "SCORES", "STATUS",
           "InvalidLinkError", "LinkKey", "LinkTarget", "MessageLinks", "cached_link_key",
           "click_path", "link_key", "open_token", "rating_path", "scored_urls", "seal",
           "status_path"]

Kind = Literal["click", "rating", "status"]
CLICK: Literal["click"] = "click"
RATING: Literal["rating"] = "rating"
STATUS: Literal["status"] = "status"
_KINDS: dict[Kind, int] = {CLICK: 1, RATING: 2, STATUS: 3}
_PATHS: dict[Kind, str] = {CLICK: "/r/", RATING: "/rate/", STATUS: "/s/"}
CHANNELS = ("email", "sms", "inapp")
#: languages of the rating page (those with a complete set of templates)
LANGUAGES = ("en", "es", "fr", "de")
_NO_LANGUAGE = 7
#: milestone order in tokens; new milestones are appended, never inserted
MILESTONES = ("return_initiated", "return_approved", "label_created", "shipment_dispatched",
              "in_transit", "warehouse_received", "inspection_completed", "restocked",
              "refund_processed", "return_completed", "return_rejected", "return_cancelled",
              "exception")
SCORES = (1, 2, 3, 4, 5)
#: channels whose call-to-action is rewritten when the message is rendered: email clicks are
#: the email provider's to track (SendGrid click tracking), in-app links are rewritten when
#: the app reads its inbox (``/v1/inbox``), where the customer's own opt-out is known
RENDER_TRACKED = frozenset({"sms"})
_VERSION = 1
_AD = b"return-notify/links/v1"
MAX_TOKEN_CHARS = 200


class InvalidLinkError(ValueError):
    """The token was not issued by us, was altered, or is malformed."""


@dataclass(frozen=True)
class LinkKey:
    """The AES-SIV key of link tokens (derived; the secret itself is never kept)."""

    raw: bytes

    def __repr__(self) -> str:  # never print key material
        return "LinkKey(...)"


def link_key(secret: str) -> LinkKey:
    """The token key for ``secret`` (``RSN_LINK_SECRET``): HKDF-SHA256, 512 bits."""
    derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                   info=b"return-notify/links/v1").derive(secret.encode())
    return LinkKey(derived)


@lru_cache(maxsize=4)
def cached_link_key(secret: str) -> LinkKey:
    """:func:`link_key`, derived once per secret and process."""
    return link_key(secret)


@dataclass(frozen=True)
class LinkTarget:
    """What a token names: a notification's link (``click``), its rating (``rating``) or
    its return's status page (``status``)."""

    kind: Kind
    tenant_id: int
    return_id: str
    milestone: str
    channel: str
    language: str | None = None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 56:
            raise InvalidLinkError("truncated token")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seal(target: LinkTarget, key: LinkKey) -> str:
    """The URL-safe token of ``target`` (about 30 characters plus the return reference)."""
    if target.tenant_id < 1:
        raise ValueError("tenant_id must be positive")
    language = LANGUAGES.index(target.language) if target.language in LANGUAGES else _NO_LANGUAGE
    payload = (bytes([_VERSION << 4 | _KINDS[target.kind],
                      CHANNELS.index(target.channel) | language << 2,
                      MILESTONES.index(target.milestone)])
               + _varint(target.tenant_id) + target.return_id.encode())
    return _b64(AESSIV(key.raw).encrypt(payload, [_AD]))


def open_token(token: str, key: LinkKey) -> LinkTarget:
    """Open a token from :func:`seal`; raises :class:`InvalidLinkError`."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidLinkError("not a link token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = AESSIV(key.raw).decrypt(raw, [_AD])
    except (InvalidTag, ValueError, TypeError) as exc:
        raise InvalidLinkError("link token is invalid or was altered") from exc
    if len(payload) < 5 or payload[0] >> 4 != _VERSION:
        raise InvalidLinkError("unknown link token version")
    kinds: dict[int, Kind] = {v: k for k, v in _KINDS.items()}
    kind, flags, milestone = kinds.get(payload[0] & 0x0F), payload[1], payload[2]
    channel, language = flags & 0x03, flags >> 2
    if kind is None or channel >= len(CHANNELS) or milestone >= len(MILESTONES):
        raise InvalidLinkError("malformed link token")
    tenant_id, pos = _read_varint(payload, 3)
    try:
        return_id = payload[pos:].decode()
    except UnicodeDecodeError as exc:
        raise InvalidLinkError("malformed link token") from exc
    if not return_id or tenant_id < 1:
        raise InvalidLinkError("malformed link token")
    return LinkTarget(kind, tenant_id, return_id, MILESTONES[milestone], CHANNELS[channel],
                      LANGUAGES[language] if language < len(LANGUAGES) else None)


def click_path(token: str) -> str:
    return f"/r/{token}"


def rating_path(token: str) -> str:
    return f"/rate/{token}"


def status_path(token: str) -> str:
    return f"/s/{token}"


@dataclass(frozen=True)
class MessageLinks:
    """One tenant's link settings as the renderer applies them to each message.

    Every message gets its return's sealed status page (``status_url``, and ``cta_url``
    where the milestone has no link of its own). ``tracking``: the SMS call-to-action
    becomes a ``/r/`` link. ``survey_milestones``: the notifications of these milestones
    carry the rating (``rating_url``, and in email ``rating_urls``, one link per score).
    Built per tenant by ``template_store`` from the tenant's switches; absent (None) when
    ``RSN_LINK_SECRET`` is unset (messages then link to ``/r/{tenant}/{return_id}``).
    """

    tenant_id: int
    base_url: str
    key: LinkKey
    tracking: bool = False
    survey_milestones: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        """Whether the tenant's switches add anything beyond the status link."""
        return self.tracking or bool(self.survey_milestones)

    def url(self, target: LinkTarget) -> str:
        return self.base_url.rstrip("/") + _PATHS[target.kind] + seal(target, self.key)

    def for_message(self, channel: str, milestone: str, return_id: Any,
                    locales: Iterable[str], default_cta: bool = False) -> Mapping[str, Any]:
        """The context keys that replace the defaults in this message (empty: none):
        ``status_url`` (sealed), ``cta_url`` (tracked, or with ``default_cta``, the call to
        action being the status page, the sealed status page), ``rating_url`` and
        ``rating_urls``; their pages speak the first language of ``locales`` (the message's
        locale chain) that has templates."""
        if not isinstance(return_id, str) or not return_id or milestone not in MILESTONES \
                or channel not in CHANNELS:
            return {}
        language = next((lang for tag in locales if (lang := tag.split("-", 1)[0]) in LANGUAGES),
                        LANGUAGES[0])
        out: dict[str, Any] = {"status_url": self.url(
            LinkTarget(STATUS, self.tenant_id, return_id, milestone, channel, language))}
        if default_cta:
            out["cta_url"] = out["status_url"]
        if self.tracking and channel in RENDER_TRACKED:
            out["cta_url"] = self.url(LinkTarget(CLICK, self.tenant_id, return_id, milestone,
                                                 channel, language))
        if milestone in self.survey_milestones and channel in ("email", "sms"):
            rate = self.url(LinkTarget(RATING, self.tenant_id, return_id, milestone, channel,
                                       language))
            out["rating_url"] = rate
            if channel == "email":
                out["rating_urls"] = scored_urls(rate)
        return out


def scored_urls(rating_url: str, scores: Iterable[int] = SCORES) -> list[tuple[int, str]]:
    """``(score, url)`` for each one-click score link of a rating URL."""
    return [(s, f"{rating_url}?score={s}") for s in scores]
