"""Links that reach customers: only absolute ``https://`` URLs pass (no ``javascript:``,
``data:``, ``http:`` or relative links into a retailer's app or an email button)."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["https_url"]

MAX_URL_CHARS = 2048
#: what could break out of an attribute or a header: spaces, quotes, angle brackets,
#: backslashes, backticks and control characters
_UNSAFE = re.compile(r"[\x00-\x20\x7f\"'<>\\`]")


def https_url(value: object) -> str | None:
    """``value`` stripped if it is an absolute https URL with a host and nothing that could
    break out of an attribute (spaces, quotes, angle brackets, backslashes, control
    characters); else None."""
    if not isinstance(value, str):
        return None
    # only texts of a link's size are remembered: a hostile payload's long strings would
    # otherwise fill the memo (at most 8,192 x 2 KB per process)
    return _checked(value) if len(value) <= MAX_URL_CHARS else _check(value)


def _check(value: str) -> str | None:
    url = value.strip()
    if not url or len(url) > MAX_URL_CHARS or not url.isascii():
        return None
    if _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname:
        return None
    return url


# a link is checked where its context is built and again where a channel uses it (the
# inbox's call-to-action, after the whole batch is rendered: up to RSN_DELIVER_DRAIN_IDS
# messages of a few links each): the second check of the same text is a lookup
_checked = lru_cache(maxsize=8192)(_check)
