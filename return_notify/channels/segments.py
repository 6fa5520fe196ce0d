"""SMS segment counting (GSM-7 vs UCS-2) and fitting a text into a maximum number of segments.

Carriers bill and deliver SMS per *segment*. A text made only of GSM 03.38 characters is
sent in 7-bit septets: 160 per single message, 153 per part once it is split (the
user-data header takes 7). Characters of the extension table (``^{}\\[~]|€`` and form
feed) are sent as ESC + char, 2 septets, and a part never splits such a pair. Any other
character switches the *whole* message to UCS-2: 70 UTF-16 code units single, 67 per
part, and a part never splits a surrogate pair (emoji).

Because one non-GSM character shrinks the budget by more than half, ``fit_to_segments``
ends a GSM-7 text with ``...`` (three GSM dots) and only a text that is UCS-2 anyway
with ``…``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_LIMIT: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
PART_LIMIT: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}

GSM_ELLIPSIS = "..."
UCS2_ELLIPSIS = "…"

_TRAILING_URL = re.compile(r"(?P<sep>\s+)(?P<url>https?://\S+)\s*$")
_SOFT_BREAK_CHARS = 24  # look back this far for a word boundary before cutting mid-word


@dataclass(frozen=True)
class SegmentInfo:
    """How a text would be sent: encoding, length in units (septets or UTF-16), segments."""

    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """True when every character has a GSM 03.38 encoding (basic or extension table)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(sizes: list[int], capacity: int) -> int:
    """Parts needed when each character (of 1 or 2 units) must stay within one part."""
    parts, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            parts, used = parts + 1, 0
        used += size
    return parts


def segment_info(text: str) -> SegmentInfo:
    """Encoding, unit count and number of segments for ``text`` (an empty text is 1 segment)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    if units <= SINGLE_LIMIT[encoding]:
        return SegmentInfo(encoding, units, 1)
    return SegmentInfo(encoding, units, _pack(sizes, PART_LIMIT[encoding]))


def count_segments(text: str) -> int:
    """Number of SMS segments ``text`` is billed and delivered as."""
    return segment_info(text).segments


def fit_to_segments(text: str, max_segments: int) -> str:
    """Return ``text`` unchanged if it fits in ``max_segments``, else a clean truncation.

    The cut is made at a word boundary when one is near, trailing punctuation is dropped,
    an ellipsis is appended (``...`` for GSM-7, ``…`` for UCS-2) and a trailing URL (the
    tracking or label link, usually the point of the message) is kept whole. If even the
    URL alone does not fit, the text is cut hard.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be >= 1")
    if count_segments(text) <= max_segments:
        return text
    match = _TRAILING_URL.search(text)
    if match:
        body, tail = text[: match.start()], " " + match.group("url")
        if count_segments(_compose(body, 0, tail)) <= max_segments:
            return _best_cut(body, tail, max_segments)
    return _best_cut(text, "", max_segments)


def _compose(body: str, n: int, tail: str) -> str:
    head = body[:n].rstrip()
    ellipsis = GSM_ELLIPSIS if is_gsm7(head + tail) else UCS2_ELLIPSIS
    return head + ellipsis + tail


def _best_cut(body: str, tail: str, max_segments: int) -> str:
    # The segment count never decreases as the kept prefix grows: binary-search the longest.
    lo, hi = 0, len(body)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_segments(_compose(body, mid, tail)) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    n = lo
    if n == 0 and not tail:
        return _hard_cut(body, max_segments)
    if n < len(body) and not body[n].isspace():
        space = body.rfind(" ", max(0, n - _SOFT_BREAK_CHARS), n)
        if space > 0:
            n = space
    head = body[:n].rstrip().rstrip(",;:-–—(")
    ellipsis = GSM_ELLIPSIS if is_gsm7(head + tail) else UCS2_ELLIPSIS
    return head + ellipsis + tail


def _hard_cut(text: str, max_segments: int) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_segments(text[:mid]) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]
