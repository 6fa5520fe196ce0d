"""The STOP / START / HELP keywords of an inbound SMS, as the Twilio webhook reads them."""

from __future__ import annotations

import pytest

from return_notify.api.webhooks import keyword


@pytest.mark.parametrize("body,expected", [
    ("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("stopall", "stop"),
    ("Unsubscribe", "stop"), ("cancel", "stop"), ("END", "stop"), ("quit", "stop"),
    ("stop texting me", "stop"), ("START", "start"), ("yes", "start"), ("unstop", "start"),
    ("help", "help"), ("INFO", "help"), ("yes please", None), ("where is my refund", None),
    ("", None), ("help me stop", None),
])
def test_keywords(body: str, expected: str | None) -> None:
    assert keyword(body) == expected
