"""The last step of rendering: each part's text cleaned up for its channel."""

from __future__ import annotations

import re

from return_notify.core.sms_segments import to_gsm7

_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TRAILING_SPACE_RE = re.compile(r"[ \t]+$", re.MULTILINE)
# "am Di., 3. Dez.." -> "am Di., 3. Dez.": a sentence ending in an abbreviated date (de, fr).
_DOUBLE_DOT_RE = re.compile(r"\.\.(?=[\s<]|$)")  # a literal first: a fast scan
_SMS_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " "})


def finish(channel: str, part: str, raw: str, sms_unicode: str = "transliterate") -> str:
    """The rendered part cleaned up for its channel: SMS on one line, without non-breaking
    spaces (they would force UCS-2) and transliterated to GSM-7 unless ``sms_unicode`` is
    "keep"; subjects and titles on one line; plain text without trailing spaces or runs of
    blank lines; a doubled full stop after an abbreviation made single."""
    if ".." in raw:
        raw = _DOUBLE_DOT_RE.sub(
            lambda m: ".." if raw[m.start() - 1 : m.start()] in (".", " ", "\n", "") else ".", raw)
    if channel == "sms":
        if "\u00a0" in raw or "\u202f" in raw or "\u2009" in raw:
            raw = raw.translate(_SMS_SPACES)
        if sms_unicode != "keep":  # one non-GSM letter would make the whole SMS UCS-2
            raw = to_gsm7(raw)
        return " ".join(raw.split())
    if part in ("subject", "title"):
        return " ".join(raw.split())
    if part == "html":
        return raw.strip()
    # a literal test first: the regular expressions try every position of the text
    if " \n" in raw or "\t\n" in raw or raw.endswith((" ", "\t")):
        raw = _TRAILING_SPACE_RE.sub("", raw)
    if "\n\n\n" in raw:
        raw = _BLANK_LINES_RE.sub("\n\n", raw)
    return raw.strip()
