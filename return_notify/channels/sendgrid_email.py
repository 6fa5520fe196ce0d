"""Email through SendGrid's v3 Mail Send API with the official ``sendgrid`` SDK.

The SDK (``python_http_client`` on ``urllib``) has no timeout by default: the client's
``timeout`` is set explicitly. ``RSN_SENDGRID_BASE_URL`` points it at a regional endpoint
or a local server (``host=`` of ``SendGridAPIClient``).

What is sent: From (with display name), Reply-To, subject, text/plain then text/html
content, ``List-Unsubscribe`` (https + mailto) with RFC 8058 ``List-Unsubscribe-Post``,
and ``custom_args={"delivery_id": "<id>"}`` only: custom args and categories come back on
every event webhook, so they carry no personal data. The provider message id is the
``X-Message-Id`` response header.

Classification: 429 → ``RateLimitedError`` (wait until ``X-RateLimit-Reset``, epoch
seconds, at least 1 s; else ``Retry-After``); 5xx, 408, timeouts and connection errors →
``TransientError``; other 4xx → ``PermanentError`` with the status as code and SendGrid's
error messages.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    ReplyTo,
    Subject,
    To,
)

from return_notify.addresses import normalize_email
from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.http_transport import PooledSendGridClient
from return_notify.channels.smtp_email import EmailIdentity, extra_headers
from return_notify.core.masking import mask
from return_notify.errors import DeliveryError, PermanentError, RateLimitedError, TransientError

logger = logging.getLogger(__name__)

#: headers SendGrid refuses in the ``headers`` object (it sets them itself)
RESERVED_HEADERS = frozenset({
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
})


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``X-RateLimit-Reset`` (epoch seconds) or ``Retry-After``; >= 1."""
    if not headers:
        return None
    now = time.time() if now is None else now
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(1.0, float(reset) - now)
        except ValueError:
            pass
    after = headers.get("Retry-After")
    if after:
        try:
            return max(1.0, float(after))
        except ValueError:
            try:
                return max(1.0, parsedate_to_datetime(after).timestamp() - now)
            except (TypeError, ValueError):
                return None
    return None


def error_messages(body: bytes | str | None) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line."""
    try:
        data = json.loads(body or b"")
        items = data.get("errors", []) if isinstance(data, dict) else []
        texts = [f"{e.get('message')}" + (f" ({e['field']})" if e.get("field") else "") for e in items]
        return "; ".join(texts)[:500]
    except (ValueError, AttributeError, TypeError):
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        return raw[:200]


class SendGridChannel(Channel):
    """One SendGrid account (API key) for email."""

    provider = "sendgrid"
    channel = "email"

    def __init__(
        self, api_key: str, identity: EmailIdentity,
        base_url: str = "https://api.sendgrid.com", timeout_s: float = 10.0,
    ) -> None:
        self._identity = identity
        self._client = SendGridAPIClient(api_key=api_key, host=base_url.rstrip("/"))
        # the SDK's client, with pooled keep-alive connections (see http_transport)
        self._http = PooledSendGridClient(
            host=self._client.host, request_headers=self._client.client.request_headers,
            version=3, timeout=timeout_s,  # the SDK default is None: wait forever
            pool_size=self.max_parallel)
        self._client.client = self._http

    def resize_connections(self, size: int) -> None:
        self._http.pool.resize(size)

    def close(self) -> None:
        super().close()
        self._http.pool.close()

    def build_mail(self, message: OutboundMessage) -> Mail:
        ident = self._identity
        mail = Mail(
            from_email=From(ident.from_email, ident.from_name),
            to_emails=To(normalize_email(message.recipient)),
            subject=Subject(message.subject or ""),
            plain_text_content=PlainTextContent(message.text),
            html_content=HtmlContent(message.html) if message.html else None,
        )
        if ident.reply_to:
            mail.reply_to = ReplyTo(ident.reply_to)
        for name, value in extra_headers(message, ident, RESERVED_HEADERS).items():
            mail.header = Header(name, value)
        mail.custom_arg = CustomArg("delivery_id", str(message.delivery_id))
        return mail

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.subject:
            raise PermanentError("email without a subject", code="invalid-message", provider=self.provider)
        try:
            mail = self.build_mail(message)
        except Exception as exc:  # noqa: BLE001 - the SDK's helpers raise assorted types
            raise PermanentError(f"cannot build email: {type(exc).__name__}: {exc}",
                                 code="invalid-message", provider=self.provider) from exc
        try:
            response: Any = self._client.send(mail)
        except SendGridHTTPError as exc:
            raise self._log(message, self._classify(exc)) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # incl. timeouts
            error = TransientError(f"SendGrid unreachable: {type(exc).__name__}: {exc}",
                                   code="connection", provider=self.provider)
            raise self._log(message, error) from exc
        message_id = response.headers.get("X-Message-Id") or ""
        if not message_id:
            logger.warning("delivery %s: SendGrid answered %s without X-Message-Id",
                           message.delivery_id, response.status_code)
        logger.debug("delivery %s to %s accepted by sendgrid as %s",
                     message.delivery_id, mask(message.recipient), message_id)
        return SendResult(self.provider, message_id, "queued")

    def _classify(self, exc: SendGridHTTPError) -> DeliveryError:
        status = int(getattr(exc, "status_code", 0) or 0)
        text = error_messages(getattr(exc, "body", None)) or str(getattr(exc, "reason", ""))
        message = f"SendGrid {status}: {text}"
        if status == 429:
            return RateLimitedError(message, code="429", provider=self.provider,
                                    retry_after_s=retry_after_s(getattr(exc, "headers", None)))
        if status >= 500 or status in (0, 408):
            return TransientError(message, code=str(status), provider=self.provider)
        return PermanentError(message, code=str(status), provider=self.provider)

    def _log(self, message: OutboundMessage, error: DeliveryError) -> DeliveryError:
        logger.info("delivery %s to %s: sendgrid %s %s", message.delivery_id,
                    mask(message.recipient), type(error).__name__, error.code)
        return error
