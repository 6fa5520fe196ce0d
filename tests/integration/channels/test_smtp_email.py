"""SMTP channel: stdlib smtplib against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from return_notify.channels.smtp_email import SmtpChannel, SmtpConfig
from return_notify.errors import ConfigurationError, PermanentError, TransientError
from tests.integration.provider_helpers import (
    IDENTITY,
    SmtpTestServer,
    closed_port_url,
    email_message,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def channel(smtp: SmtpTestServer) -> Iterator[SmtpChannel]:
    ch = SmtpChannel(smtp.url(), IDENTITY, timeout_s=2.0)
    yield ch
    ch.close()


def test_multipart_message_with_unsubscribe_headers(smtp: SmtpTestServer, channel: SmtpChannel) -> None:
    # when
    result = channel.send(email_message())

    # then
    [mail] = smtp.messages
    assert mail.mail_from == "returns@shop.example" and mail.rcpt_tos == ["ann@customer.example"]
    msg = mail.message
    assert msg["From"] == "Shop Returns <returns@shop.example>"
    assert msg["To"] == "ann@customer.example"
    assert msg["Reply-To"] == "help@shop.example"
    assert msg["Subject"] == "Your return RMA-1001 was received"
    assert msg["List-Unsubscribe"] == (
        "<https://notify.shop.example/v1/unsubscribe/tok-123>, "
        "<mailto:unsubscribe@shop.example?subject=unsubscribe%20tok-123>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == result.provider_message_id and result.provider == "smtp"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().strip() == "Hi Ann, we received your return RMA-1001."
    assert html.get_content_type() == "text/html"
    assert "<b>RMA-1001</b>" in html.get_content()


def test_text_only_message_is_a_single_part(smtp: SmtpTestServer, channel: SmtpChannel) -> None:
    channel.send(email_message(html=None, metadata={}))
    msg = smtp.messages[0].message
    assert msg.get_content_type() == "text/plain" and msg["List-Unsubscribe"] is None


def test_one_connection_is_reused_for_many_messages(smtp: SmtpTestServer, channel: SmtpChannel) -> None:
    for i in range(5):
        channel.send(email_message(delivery_id=i))
    assert len(smtp.messages) == 5 and smtp.handler.ehlo_count == 1


@pytest.mark.parametrize(
    ("recipient", "error", "code"),
    [("reject@customer.example", PermanentError, "550"),
     ("busy@customer.example", TransientError, "450")],
)
def test_refused_recipients_are_classified_and_the_connection_survives(
    smtp: SmtpTestServer, channel: SmtpChannel, recipient: str, error: type[Exception], code: str
) -> None:
    # when
    with pytest.raises(error) as info:
        channel.send(email_message(recipient))

    # then
    assert type(info.value) is error and getattr(info.value, "code", None) == code
    channel.send(email_message())
    assert len(smtp.messages) == 1 and smtp.handler.ehlo_count == 1


def test_server_down_is_transient() -> None:
    channel = SmtpChannel(closed_port_url("smtp"), IDENTITY, timeout_s=1.0)
    with pytest.raises(TransientError) as info:
        channel.send(email_message())
    assert info.value.code == "connection"


def test_silent_server_times_out_as_transient() -> None:
    # given a listener that completes TCP handshakes but never greets
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        channel = SmtpChannel(f"smtp://127.0.0.1:{silent.getsockname()[1]}", IDENTITY, timeout_s=0.5)

        # when / then
        with pytest.raises(TransientError):
            channel.send(email_message())


def test_idle_connection_is_probed_and_reopened_after_a_restart(smtp: SmtpTestServer) -> None:
    # given
    channel = SmtpChannel(smtp.url(), IDENTITY, timeout_s=2.0, idle_probe_s=0.0)
    channel.send(email_message())
    smtp.stop()

    # when the server comes back on the same port
    with SmtpTestServer(port=smtp.port) as again:
        result = channel.send(email_message())

    # then
    assert result.provider == "smtp" and len(again.messages) == 1
    channel.close()


def test_connection_lost_between_probes_fails_once_then_reconnects(smtp: SmtpTestServer) -> None:
    # given a connection the channel believes fresh (no probe)
    channel = SmtpChannel(smtp.url(), IDENTITY, timeout_s=2.0, idle_probe_s=3600.0)
    channel.send(email_message())
    smtp.stop()

    with SmtpTestServer(port=smtp.port) as again:
        # when: never resent blindly, the pipeline retries
        with pytest.raises(TransientError):
            channel.send(email_message())
        # then the next send opens a new connection
        channel.send(email_message())
        assert len(again.messages) == 1
    channel.close()


def test_login_with_credentials_from_the_url() -> None:
    with SmtpTestServer(credentials=("mailer", "s3cr@t")) as server:
        good = SmtpChannel(server.url("mailer", "s3cr%40t"), IDENTITY, timeout_s=2.0)
        good.send(email_message())
        assert len(server.messages) == 1

        bad = SmtpChannel(server.url("mailer", "wrong"), IDENTITY, timeout_s=2.0)
        with pytest.raises(PermanentError) as info:
            bad.send(email_message())
        assert info.value.code == "535"


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "password", "implicit", "starttls"),
    [
        ("smtp://u:p%40ss@mail.example:587?starttls=1", "mail.example", 587, "u", "p@ss", False, True),
        ("smtps://u:hunter2@mail.example", "mail.example", 465, "u", "hunter2", True, False),
        ("smtp://relay.internal", "relay.internal", 25, None, None, False, False),
    ],
)
def test_smtp_url_parsing(url: str, host: str, port: int, user: str | None, password: str | None,
                          implicit: bool, starttls: bool) -> None:
    cfg = SmtpConfig.from_url(url)
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.implicit_tls, cfg.starttls) == (
        host, port, user, password, implicit, starttls
    )
    assert password is None or password not in repr(cfg)


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "smtp://h:notaport"])
def test_bad_smtp_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="RSN_SMTP_URL"):
        SmtpConfig.from_url(url)
