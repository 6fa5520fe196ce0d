"""The https check's memo: only texts of a link's size are remembered, and the verdicts are
the same with or without it."""

from __future__ import annotations

import pytest

from return_notify.core import urls
from return_notify.core.urls import MAX_URL_CHARS, https_url


@pytest.mark.parametrize(("value", "expected"), [
    ("https://shop.example/r/1", "https://shop.example/r/1"),
    ("  https://shop.example/r/1  ", "https://shop.example/r/1"),
    ("http://shop.example/r/1", None),
    ("javascript:alert(1)", None),
    ("https://shop.example/a b", None),
    (" " * (MAX_URL_CHARS + 10) + "https://shop.example/r/1", "https://shop.example/r/1"),
    ("https://shop.example/" + "a" * MAX_URL_CHARS, None),
])
def test_the_memo_gives_the_checks_verdict(value: str, expected: str | None) -> None:
    assert urls._check(value) == expected
    assert https_url(value) == expected
    assert https_url(value) == expected  # again, from the memo where it is remembered


def test_long_texts_are_checked_but_not_remembered() -> None:
    urls._checked.cache_clear()
    for i in range(50):
        assert https_url("https://shop.example/" + "x" * MAX_URL_CHARS + str(i)) is None
    assert urls._checked.cache_info().currsize == 0
    assert https_url("https://shop.example/r/2") == "https://shop.example/r/2"
    assert urls._checked.cache_info().currsize == 1
