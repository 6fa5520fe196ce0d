"""Regions and product categories, spelled one way everywhere: rules, permission scopes,
quiet hours, template scopes and reports (pure, no I/O).

A region is upper case, letters/digits/``_`` in ``-``-separated segments (``US``, ``EU``,
``EU-DE``); a scope region covers its sub-regions (``EU`` covers ``EU-DE``, not ``EUR``).
``None``, ``""``, ``*`` and ``any`` mean ANY where a scope is parsed.
"""

from __future__ import annotations

import re

_REGION = re.compile(r"^[A-Z0-9_]+(-[A-Z0-9_]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ANY = ("", "*", "ANY")

__all__ = ["event_category", "event_region", "normalize_category", "normalize_region",
           "region_chain", "region_covers", "region_path"]


def normalize_region(value: str | None) -> str | None:
    """A rule's or a scope's region, upper case; ``None``, ``""``, ``*`` or ``any`` → ANY
    (``None``); ``ValueError`` with the reason when malformed."""
    if value is None or value.strip().upper() in _ANY:
        return None
    region = value.strip().upper()
    if len(region) > 32 or not _REGION.fullmatch(region):
        raise ValueError(f"region {value!r}: letters, digits and '_' in '-'-separated segments "
                         "(e.g. US, EU, EU-DE), at most 32 characters; '*' for any")
    return region


def normalize_category(value: str | None) -> str | None:
    """A rule's or a scope's product category, lower case; ``None``, ``""``, ``*`` → ANY."""
    if value is None or value.strip().upper() in _ANY:
        return None
    category = value.strip().lower()
    if len(category) > 64 or _CONTROL.search(category):
        raise ValueError(f"product category {value!r}: at most 64 printable characters")
    return category


def event_region(value: str | None) -> str | None:
    """An event's region as rules compare it (never raises)."""
    return (value.strip().upper() or None) if value else None


def event_category(value: str | None) -> str | None:
    """An event's product category as rules compare it (never raises)."""
    return (value.strip().lower() or None) if value else None


def region_covers(scope: str, region: str) -> bool:
    """True when ``region`` is ``scope`` or one of its sub-regions (``EU`` covers ``EU-DE``)."""
    return region == scope or region.startswith(scope + "-")


def region_path(region: str | None) -> str | None:
    """A recipient's region as a ``-``-separated path for quiet hours: upper case, ``_`` read
    as ``-`` (``us_tx`` → ``US-TX``); never raises."""
    return region.strip().upper().replace("_", "-") if region and region.strip() else None


def region_chain(region: str | None) -> list[str]:
    """``US-FL`` → ``["US-FL", "US", "*"]``: most specific first, ``*`` is the tenant default."""
    norm = region_path(region)
    chain: list[str] = []
    while norm:
        chain.append(norm)
        norm = norm.rpartition("-")[0] or None
    return [*chain, "*"]
