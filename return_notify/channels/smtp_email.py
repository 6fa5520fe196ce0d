"""Email over SMTP (stdlib ``smtplib``), plus the header rules every email provider shares.

``RSN_SMTP_URL`` says where and how: ``smtp://user:pass@host:587?starttls=1`` (STARTTLS),
``smtps://user:pass@host:465`` (implicit TLS) or ``smtp://host:25`` (no auth, no TLS);
``?helo=name`` sets the EHLO name (default: the domain of ``RSN_EMAIL_FROM``, so no DNS
look-up happens). One connection is kept per channel object (one per worker process),
guarded by a lock, probed with NOOP after it has been idle and re-opened when it dropped.

Classification: a recipient refused with 5xx, and any other 5xx reply, is permanent; 4xx
replies, connection errors and timeouts are transient. A connection lost *during* a send
is never resent here (the server may have queued the message): the pipeline decides.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from urllib.parse import parse_qs, quote, unquote, urlsplit

from return_notify.addresses import normalize_email
from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.core.masking import mask
from return_notify.errors import ConfigurationError, DeliveryError, PermanentError, TransientError

logger = logging.getLogger(__name__)

ONE_CLICK = "List-Unsubscribe=One-Click"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class EmailIdentity:
    """Who an email is from, for every email provider."""

    from_email: str
    from_name: str | None = None
    reply_to: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    unsubscribe_mailto: str | None = None

    @property
    def from_header(self) -> str:
        return formataddr((self.from_name, self.from_email)) if self.from_name else self.from_email

    @property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2] or "localhost"


def unsubscribe_headers(message: OutboundMessage, identity: EmailIdentity) -> dict[str, str]:
    """``List-Unsubscribe`` (https, plus mailto if configured) and RFC 8058 one-click POST.

    A ``List-Unsubscribe`` already in ``message.headers`` (set by the pipeline) wins; else
    it is built from ``metadata["unsubscribe_token"]``; without either there is none.
    """
    given = {k.lower(): v for k, v in message.headers.items()}
    if "list-unsubscribe" in given:
        value = given["list-unsubscribe"]
        headers = {"List-Unsubscribe": value}
        if "<https://" in value or "<http://" in value:
            headers["List-Unsubscribe-Post"] = given.get("list-unsubscribe-post", ONE_CLICK)
        return headers
    token = message.metadata.get("unsubscribe_token")
    if not token:
        return {}
    safe = quote(str(token), safe="")
    parts = [f"<{identity.public_base_url.rstrip('/')}/v1/unsubscribe/{safe}>"]
    if identity.unsubscribe_mailto:
        parts.append(f"<mailto:{identity.unsubscribe_mailto}?subject={quote('unsubscribe ' + str(token))}>")
    return {"List-Unsubscribe": ", ".join(parts), "List-Unsubscribe-Post": ONE_CLICK}


def extra_headers(
    message: OutboundMessage, identity: EmailIdentity, reserved: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``message.headers`` plus unsubscribe headers, minus reserved names and unsafe values."""
    headers: dict[str, str] = {}
    for name, value in {**message.headers, **unsubscribe_headers(message, identity)}.items():
        if name.lower() in reserved or "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            logger.warning("delivery %s: header %r dropped (reserved or unsafe)", message.delivery_id, name)
            continue
        headers[name] = value
    return headers


@dataclass(frozen=True)
class SmtpConfig:
    """Parsed ``RSN_SMTP_URL``; ``repr`` never shows the password."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = False
    helo: str | None = None

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"SmtpConfig({scheme}://{user}{self.host}:{self.port}, starttls={self.starttls})"

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigurationError(
                "RSN_SMTP_URL must look like smtp://user:pass@host:587?starttls=1 or smtps://host:465"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if implicit else 25)
        except ValueError as exc:
            raise ConfigurationError("RSN_SMTP_URL has an invalid port") from exc
        return cls(
            host=parts.hostname, port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit, starttls=query.get("starttls", "0").lower() in _TRUE,
            helo=query.get("helo"),
        )


def classify_smtp_code(code: int, text: str, provider: str = "smtp") -> DeliveryError:
    """5xx: permanent; 4xx and anything else (-1: no reply): transient."""
    if 500 <= code < 600:
        return PermanentError(f"SMTP {code}: {text}", code=str(code), provider=provider)
    return TransientError(f"SMTP {code}: {text}", code=str(code), provider=provider)


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


class SmtpChannel(Channel):
    """Email through one SMTP server; the connection lives as long as the channel object."""

    provider = "smtp"
    channel = "email"

    def __init__(
        self, url: str, identity: EmailIdentity, timeout_s: float = 10.0, idle_probe_s: float = 5.0
    ) -> None:
        self._config = SmtpConfig.from_url(url)
        self._identity = identity
        self._timeout_s = timeout_s
        self._idle_probe_s = idle_probe_s
        self._lock = threading.Lock()
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0

    def build_message(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message: multipart/alternative (text, then HTML) when there is HTML."""
        ident = self._identity
        msg = EmailMessage()
        msg["From"] = ident.from_header
        # parsed, not pasted: a line break in the address would end the header block
        msg["To"] = normalize_email(message.recipient)
        msg["Subject"] = message.subject or ""
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=ident.domain)
        if ident.reply_to:
            msg["Reply-To"] = ident.reply_to
        reserved = frozenset({"from", "to", "subject", "date", "message-id", "reply-to", "cc", "bcc"})
        for name, value in extra_headers(message, ident, reserved).items():
            msg[name] = value
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        return msg

    def send(self, message: OutboundMessage) -> SendResult:
        try:
            msg = self.build_message(message)
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"cannot build email: {exc}", code="invalid-message",
                                 provider=self.provider) from exc
        message_id = str(msg["Message-ID"])
        with self._lock:
            try:
                conn = self._connection()
                conn.send_message(msg, from_addr=self._identity.from_email, to_addrs=[str(msg["To"])])
                self._last_used = time.monotonic()
            except smtplib.SMTPRecipientsRefused as exc:
                self._last_used = time.monotonic()  # smtplib sent RSET; the session is fine
                code, resp = next(iter(exc.recipients.values()), (-1, b"refused"))
                raise self._log(message, classify_smtp_code(code, _text(resp))) from exc
            except smtplib.SMTPResponseException as exc:  # sender/data/auth/connect/helo
                self._drop()
                raise self._log(message, classify_smtp_code(exc.smtp_code, _text(exc.smtp_error))) from exc
            except smtplib.SMTPNotSupportedError as exc:  # e.g. STARTTLS asked, not offered
                self._drop()
                raise self._log(message, PermanentError(f"SMTP: {exc}", code="not-supported",
                                                        provider=self.provider)) from exc
            except (OSError, ssl.SSLError) as exc:  # disconnects, refused, timeouts (SMTPException too)
                self._drop()
                raise self._log(message, TransientError(f"SMTP {type(exc).__name__}: {exc}",
                                                        code="connection", provider=self.provider)) from exc
        logger.debug("delivery %s sent to %s via smtp", message.delivery_id, mask(message.recipient))
        return SendResult(self.provider, message_id, "accepted")

    def _log(self, message: OutboundMessage, error: DeliveryError) -> DeliveryError:
        logger.info("delivery %s to %s: smtp %s %s", message.delivery_id, mask(message.recipient),
                    type(error).__name__, error.code)
        return error

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and time.monotonic() - self._last_used > self._idle_probe_s:
            try:
                if self._conn.noop()[0] != 250:
                    self._drop()
            except (OSError, smtplib.SMTPException):
                self._drop()
        if self._conn is None:
            self._conn = self._connect()
            self._last_used = time.monotonic()
        return self._conn

    def _connect(self) -> smtplib.SMTP:
        cfg = self._config
        helo = cfg.helo or self._identity.domain
        conn: smtplib.SMTP
        if cfg.implicit_tls:
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, local_hostname=helo, timeout=self._timeout_s,
                                    context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=helo, timeout=self._timeout_s)
        try:
            conn.ehlo()
            if cfg.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, cfg.password or "")
        except BaseException:
            conn.close()
            raise
        logger.debug("smtp connected to %s:%s", cfg.host, cfg.port)
        return conn

    def _drop(self, graceful: bool = False) -> None:
        """Forget the connection; QUIT only when closing cleanly (a broken one may hang)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if graceful:
                conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop(graceful=True)
