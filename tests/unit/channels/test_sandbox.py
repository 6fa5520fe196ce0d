"""The sandbox channel: its magic recipients and its configured failure rates."""

from __future__ import annotations

import random

import pytest

from return_notify.channels.base import OutboundMessage
from return_notify.channels.sandbox import SandboxChannel
from return_notify.errors import PermanentError, TransientError


def _msg(rcpt: str, attempt: int = 1) -> OutboundMessage:
    return OutboundMessage(delivery_id=1, channel="email", recipient=rcpt, text="t", attempt=attempt)


def test_sandbox_magic_recipients() -> None:
    ch = SandboxChannel("email")
    assert ch.send(_msg("a@example.com")).provider == "sandbox"
    with pytest.raises(PermanentError):
        ch.send(_msg("fail-permanent@example.com"))
    with pytest.raises(TransientError):
        ch.send(_msg("fail-transient-2@example.com", attempt=2))
    assert ch.send(_msg("fail-transient-2@example.com", attempt=3)).provider_message_id


def test_sandbox_failure_rates_are_applied() -> None:
    ch = SandboxChannel("sms", transient_failure_rate=0.5, rng=random.Random(4))
    results = ch.send_many([_msg("+14155550000") for _ in range(400)])
    failures = sum(isinstance(r, TransientError) for r in results)
    assert 150 < failures < 250
