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
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
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


#: a character outside both GSM 03.38 tables (one regular-expression search, not a Python
#: loop per character: every SMS is checked several times while it is rendered)
_NOT_GSM7 = re.compile("[^" + "".join(re.escape(c) for c in sorted(GSM7_BASIC | GSM7_EXTENSION))
                       + "]")
_EXTENSION = re.compile("[" + "".join(re.escape(c) for c in sorted(GSM7_EXTENSION)) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def is_gsm7(text: str) -> bool:
    """True when every character has a GSM 03.38 encoding (basic or extension table)."""
    return _NOT_GSM7.search(text) is None


#: Characters outside GSM 03.38 with a GSM-7 look-alike that is not their accent-stripped
#: base letter (typographic punctuation, ligatures, spaces), as carriers' "smart encoding"
#: replaces them. Everything else is decomposed (NFKD) and keeps its base letter when that
#: one is GSM-7 (``á`` → ``a``, ``ç`` → ``c``, ``ô`` → ``o``).
_LOOKALIKES = {
    "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u2002": " ",
    "\u2003": " ", "\u200b": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "`": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"', "\u2039": "'", "\u203a": "'",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2026": "...", "\u2022": "-", "\u00b7": ".", "\u02c6": "^", "\u02dc": "~",
    "\u0153": "oe", "\u0152": "OE", "\u00e7": "c", "\u00f0": "d", "\u00d0": "D",
    "\u00fe": "th", "\u00de": "Th", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D",
    "\u00e2": "a", "\u00ea": "e", "\u00ee": "i", "\u00f4": "o", "\u00fb": "u",
    "\u00c0": "A", "\u00c8": "E", "\u00cc": "I", "\u00d2": "O", "\u00d9": "U",
    "\u00aa": "a", "\u00ba": "o", "\u00b0": "o", "\u2116": "No",
}


@lru_cache(maxsize=4096)
def _gsm7_equivalent(ch: str) -> str:
    """The GSM-7 text that stands for ``ch``, or ``ch`` itself when there is none."""
    if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
        return ch
    if ch in _LOOKALIKES:
        return _LOOKALIKES[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in base):
        return base
    return ch


def to_gsm7(text: str) -> str:
    """``text`` with every character that has a GSM-7 equivalent replaced by it (``sáb`` →
    ``sab``, ``«`` → ``"``, ``…`` → ``...``), when that makes the whole text GSM-7 in no
    more segments; otherwise ``text`` unchanged (an emoji keeps it UCS-2 anyway, and then
    the accents cost nothing). GSM-7 letters (``é ñ ü ß à``) are always kept."""
    if text.isascii() and "`" not in text:
        return text
    out = text.translate(_EQUIVALENTS)
    if is_gsm7(out) and count_segments(out) <= count_segments(text):
        return out
    return text


class _Equivalents(dict[int, str]):
    """``str.translate``'s table of ``_gsm7_equivalent``, filled as characters are met."""

    def __missing__(self, code: int) -> str:
        out = self[code] = _gsm7_equivalent(chr(code))
        return out


_EQUIVALENTS = _Equivalents()


def _units(text: str, encoding: Encoding) -> int:
    """Septets (GSM-7: an extension character takes two) or UTF-16 code units."""
    wide = _EXTENSION if encoding == "GSM-7" else _ASTRAL
    return len(text) + len(wide.findall(text))


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
    units = _units(text, encoding)
    if units <= SINGLE_LIMIT[encoding]:
        return SegmentInfo(encoding, units, 1)
    part = PART_LIMIT[encoding]
    if units == len(text):  # every character one unit: no pair to keep whole
        return SegmentInfo(encoding, units, -(-units // part))
    return SegmentInfo(encoding, units, _pack(_unit_sizes(text, encoding), part))


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
