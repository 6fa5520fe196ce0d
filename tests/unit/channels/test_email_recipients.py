"""Email channels parse the recipient before it becomes a header or an envelope address: a
stored ``"ana@example.com\\n"`` or ``"a<x@evil.example>"`` is a permanent failure, never a
header block cut short or a message to the address in brackets."""

from __future__ import annotations

import pytest

from return_notify.channels.base import OutboundMessage
from return_notify.channels.sendgrid_email import SendGridChannel
from return_notify.channels.smtp_email import EmailIdentity, SmtpChannel
from return_notify.errors import PermanentError

IDENTITY = EmailIdentity("returns@shop.example")
BAD = ["ana@example.com\n", "ana@example.com\r\nBcc: x@evil.example", "a<x@evil.example>"]


def _message(recipient: str) -> OutboundMessage:
    return OutboundMessage(7, "email", recipient, "body", subject="Your return",
                           headers={"List-Unsubscribe": "<https://shop.example/u/1>"})


@pytest.mark.parametrize("recipient", BAD)
def test_smtp_refuses_a_recipient_that_is_not_one_address(recipient: str) -> None:
    channel = SmtpChannel("smtp://127.0.0.1:9", IDENTITY)  # never reached
    with pytest.raises(PermanentError, match="cannot build email"):
        channel.send(_message(recipient))


@pytest.mark.parametrize("recipient", BAD)
def test_sendgrid_refuses_a_recipient_that_is_not_one_address(recipient: str) -> None:
    channel = SendGridChannel("SG.test", IDENTITY, base_url="http://127.0.0.1:9")
    try:
        with pytest.raises(PermanentError, match="cannot build email"):
            channel.send(_message(recipient))
    finally:
        channel.close()


def test_a_good_recipient_keeps_every_header_in_the_header_block() -> None:
    msg = SmtpChannel("smtp://127.0.0.1:9", IDENTITY).build_message(
        _message("Ana@Example.com"))
    head, _, body = msg.as_string().partition("\n\n")
    assert "To: Ana@example.com" in head and "Subject: Your return" in head
    assert "List-Unsubscribe" in head and "List-Unsubscribe" not in body
