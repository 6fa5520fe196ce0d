"""Helpers for the provider tests: a real SMTP server (aiosmtpd), free ports, messages."""

from __future__ import annotations

import email
import socket
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from return_notify.channels.base import OutboundMessage
from return_notify.channels.smtp_email import EmailIdentity
from return_notify.config.settings import Settings

IDENTITY = EmailIdentity(
    from_email="returns@shop.example", from_name="Shop Returns", reply_to="help@shop.example",
    public_base_url="https://notify.shop.example", unsubscribe_mailto="unsubscribe@shop.example",
)


def make_settings(**values: Any) -> Settings:
    """Settings from these values and the environment, never from a ``.env`` file (with an
    unsubscribe secret unless given: real email providers refuse to send without one)."""
    values.setdefault("unsubscribe_secret", "unsubscribe-secret-for-provider-tests")
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url(scheme: str = "http") -> str:
    """A URL nobody listens on (connection refused)."""
    return f"{scheme}://127.0.0.1:{free_port()}"


def email_message(recipient: str = "ann@customer.example", **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": 42, "channel": "email", "recipient": recipient,
        "subject": "Your return RMA-1001 was received",
        "text": "Hi Ann, we received your return RMA-1001.",
        "html": "<p>Hi Ann, we received your return <b>RMA-1001</b>.</p>",
        "tenant": "shop", "metadata": {"delivery_id": 42, "unsubscribe_token": "tok-123"},
    }
    values.update(overrides)
    return OutboundMessage(**values)


def sms_message(recipient: str = "+14155550100", **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": 7, "channel": "sms", "recipient": recipient,
        "text": "Shop: your return RMA-1001 is in transit. Track: https://trk.example/abc",
        "tenant": "shop", "metadata": {"delivery_id": 7},
    }
    values.update(overrides)
    return OutboundMessage(**values)


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class RecordingHandler:
    """Accepts mail; ``reject*@`` → 550, ``busy*@`` → 450; counts EHLOs (≈ connections)."""

    messages: list[ReceivedMail] = field(default_factory=list)
    ehlo_count: int = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        self.ehlo_count += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        local = address.partition("@")[0]
        if local.startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("busy"):
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        parsed = email.message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 Ok: queued"


class SmtpTestServer:
    """A real SMTP server on 127.0.0.1 (aiosmtpd), optionally with AUTH LOGIN/PLAIN."""

    def __init__(self, port: int | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.credentials = credentials
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"smtp://{auth}127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.handler.messages

    def start(self) -> SmtpTestServer:
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
