"""SMS segment counting (GSM-7 / UCS-2, no split pairs) and fitting text into N segments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from return_notify.core.sms_segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    _gsm7_equivalent,
    count_segments,
    fit_to_segments,
    is_gsm7,
    segment_info,
    to_gsm7,
)

URL = "https://trk.example/r/RMA-1001"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("hello", "GSM-7", 5, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension table: 2 septets each
        ("€" * 81, "GSM-7", 162, 2),
        ("[]{}~^|\\", "GSM-7", 16, 1),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # ESC+€ is never split across parts
        ("Müller, Åsa, Ñandù: ¿qué?", "GSM-7", 25, 1),  # accented letters of the basic table (ù, not ú)
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("ł" * 134, "UCS-2", 134, 2),
        ("ł" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair is 2 UTF-16 units
        ("😀" * 34, "UCS-2", 68, 1),
        ("😀" * 36, "UCS-2", 72, 2),
        ("a" * 99 + "ł", "UCS-2", 100, 2),  # one non-GSM character switches the whole text
        ("Wait…", "UCS-2", 5, 1),
        ("Ñandú", "UCS-2", 5, 1),  # ú is not in GSM 03.38 (ù is)  # the ellipsis character is not GSM
    ],
)
def test_segment_info(text: str, encoding: str, units: int, segments: int) -> None:
    # when
    info = segment_info(text)

    # then
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
    assert count_segments(text) == segments


def test_emoji_parts_never_split_a_surrogate_pair() -> None:
    # given 33 emoji fill 66 of a part's 67 units; the 34th does not fit there
    text = "😀" * 67

    # then 67 emoji need 3 parts (33 + 33 + 1), not ceil(134 / 67) = 2
    assert count_segments(text) == 3


def test_fitting_text_is_returned_unchanged() -> None:
    text = "Your refund of $25.00 was processed. " + URL
    assert fit_to_segments(text, 1) == text


def test_gsm_text_is_cut_with_gsm_dots_and_keeps_the_trailing_url() -> None:
    # given
    text = ("Your return RMA-1001 is on its way to our warehouse. " * 12).strip() + " " + URL

    # when
    fitted = fit_to_segments(text, 2)

    # then
    assert count_segments(fitted) <= 2
    assert fitted.endswith("... " + URL)
    assert is_gsm7(fitted)  # "…" would have made it UCS-2 and cost segments
    head = fitted.removesuffix("... " + URL)
    assert text.startswith(head) and head.split()[-1] in text.split()  # cut between words


def test_ucs2_text_is_cut_with_the_ellipsis_character() -> None:
    text = ("Zwrot przyjęty, dziękujemy za cierpliwość. " * 10).strip() + " " + URL
    fitted = fit_to_segments(text, 1)
    assert count_segments(fitted) == 1
    assert fitted.endswith("… " + URL)


def test_text_without_url_is_cut_and_filled_close_to_the_limit() -> None:
    text = " ".join(["parcel"] * 200)
    fitted = fit_to_segments(text, 3)
    assert count_segments(fitted) == 3
    assert fitted.endswith("parcel...")
    assert len(fitted) >= 3 * 153 - 12  # nothing wasted beyond the last word


def test_url_longer_than_the_budget_falls_back_to_a_hard_cut() -> None:
    text = "See " + "https://trk.example/" + "x" * 400
    fitted = fit_to_segments(text, 1)
    assert count_segments(fitted) == 1
    assert text.startswith(fitted.removesuffix("..."))


def test_max_segments_must_be_positive() -> None:
    with pytest.raises(ValueError):
        fit_to_segments("hi", 0)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("abc xyz.,€[ł😀\n")), max_size=700),
    with_url=st.booleans(),
    max_segments=st.integers(min_value=1, max_value=4),
)
def test_fit_never_exceeds_the_budget(text: str, with_url: bool, max_segments: int) -> None:
    full = f"{text} {URL}" if with_url else text
    fitted = fit_to_segments(full, max_segments)
    assert count_segments(fitted) <= max_segments
    if count_segments(full) <= max_segments:
        assert fitted == full
    elif with_url and count_segments("... " + URL) <= max_segments:
        assert fitted.endswith(URL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sáb, 12 dic", "sab, 12 dic"),  # es: á í ó ú are not GSM-7
        ("mié. 3 de dic", "mié. 3 de dic"),  # é is: kept
        ("reçu à l\u2019entrepôt \u2013 \u00abok\u00bb \u2026", 'recu à l\'entrepot - "ok" ...'),
        ("Größe über Ñandú", "Größe über Ñandu"),
        ("œuvre Łódź", "oeuvre Lodz"),
        ("12\u00a0déc.\u202f2026", "12 déc. 2026"),
        ("`quoted`", "'quoted'"),
        ("テスト 😀", "テスト 😀"),  # no equivalent: kept, and the text stays UCS-2
        ("sáb 😀", "sáb 😀"),  # UCS-2 anyway: the accent costs nothing, so it stays
        ("\u2026" * 70, "\u2026" * 70),  # "..." x 70 would take 2 GSM-7 segments, not 1
    ],
)
def test_to_gsm7_replaces_what_has_an_equivalent(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(categories=("L", "P", "Zs", "N")), max_size=60))
def test_to_gsm7_never_costs_segments_and_is_idempotent(text: str) -> None:
    out = to_gsm7(text)
    assert to_gsm7(out) == out
    assert count_segments(out) <= count_segments(text)
    if is_gsm7(text):
        assert out == text.replace("`", "'")


# the per-character definitions, as the module first spelled them: the fast paths (one
# regular expression, str.translate, units counted without a list) must agree with them
def _is_gsm7_by_char(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _segments_by_char(text: str) -> tuple[str, int, int]:
    encoding = "GSM-7" if _is_gsm7_by_char(text) else "UCS-2"
    if encoding == "GSM-7":
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, part = 160, 153
    else:
        sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, part = 70, 67
    if sum(sizes) <= single:
        return encoding, sum(sizes), 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return encoding, sum(sizes), parts


_MIXED = st.text(alphabet=st.one_of(
    st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)),
    st.sampled_from(list("áíóúçôœŁ\u2019\u2026\u00a0`«»テ😀🎉\u200b")),
    st.characters()), max_size=400)


@settings(max_examples=500, deadline=None)
@given(_MIXED)
def test_fast_paths_agree_with_the_per_character_definitions(text: str) -> None:
    info = segment_info(text)
    assert is_gsm7(text) == _is_gsm7_by_char(text)
    assert (info.encoding, info.units, info.segments) == _segments_by_char(text)
    converted = "".join(_gsm7_equivalent(ch) for ch in text)
    expected = (converted if _is_gsm7_by_char(converted)
                and _segments_by_char(converted)[2] <= _segments_by_char(text)[2] else text)
    assert to_gsm7(text) == (text if text.isascii() and "`" not in text else expected)
