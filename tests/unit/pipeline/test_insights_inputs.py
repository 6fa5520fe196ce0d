"""What the insights accept from outside: a redirect's destination, a producer's score, and
which requests count as a person's click."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from return_notify.api.links import person_navigating
from return_notify.pipeline.engagement import safe_destination
from return_notify.pipeline.satisfaction import parse_score


@pytest.mark.parametrize(("url", "ok"), [
    ("https://track.example.com/ups/1Z999?x=1#y", True),
    ("http://track.example.com/x", False), ("javascript:alert(1)", False),
    ("https://user:pw@evil.example/", False), ("//evil.example/", False),
    ("https://", False), ("https://a.example/b c", False), ("https://a.example/\x00", False),
    ('https://a.example/"onmouseover', False), ("https://a.example/" + "x" * 3000, False),
    (None, False), (42, False)])
def test_only_plain_https_urls_are_destinations(url: Any, ok: bool) -> None:
    assert safe_destination(url) == (url if ok else None)


@pytest.mark.parametrize(("raw", "score"), [
    (1, 1), (5, 5), ("3", 3), (" 4 ", 4), ({"score": 2}, 2), ({"score": "5"}, 5),
    (0, None), (6, None), (4.5, None), (True, None), ("four", None), ({"stars": 4}, None),
    (None, None), ([5], None)])
def test_a_producers_score(raw: Any, score: int | None) -> None:
    assert parse_score(raw) == score


def _request(method: str = "GET", **headers: str) -> Request:
    return Request({"type": "http", "method": method, "path": "/r/x", "query_string": b"",
                    "headers": [(k.lower().replace("_", "-").encode(), v.encode())
                                for k, v in headers.items()]})


@pytest.mark.parametrize(("method", "headers", "person"), [
    ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
             "Sec-Fetch-User": "?1", "Sec-Fetch-Site": "cross-site"}, True),  # a click
    ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
             "Sec-Fetch-Site": "none"}, True),  # opened from the SMS or mail app
    ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site"}, False),  # no click
    ("GET", {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image",
             "Sec-Fetch-Site": "none"}, False),  # a preview image
    ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe",
             "Sec-Fetch-User": "?1"}, False),  # framed
    ("GET", {}, False),  # a scanner
    ("HEAD", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-User": "?1"}, False)])
def test_a_person_navigating(method: str, headers: dict[str, str], person: bool) -> None:
    assert person_navigating(_request(method, **headers)) is person
