"""IANA time zones by name, for names from anyone: never an exception other than "unknown".

``ZoneInfo(name)`` reads a file named after its argument: a 300-character name raised
``OSError`` (file name too long), ``"America"`` ``IsADirectoryError``; both escaped the
checks that caught only ``ValueError``, and an event carrying one was a 500.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["find_zone", "is_zone"]

#: what an IANA zone name is made of (``America/Argentina/Buenos_Aires``, ``Etc/GMT+5``)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,30}(?:/[A-Za-z0-9_+\-]{1,30}){0,2}", re.ASCII)


@lru_cache(maxsize=1024)
def find_zone(name: str) -> ZoneInfo | None:
    """The zone ``name``, or None for anything that is not a known IANA zone name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def is_zone(name: str) -> bool:
    return find_zone(name) is not None
