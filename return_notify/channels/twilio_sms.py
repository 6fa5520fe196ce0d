"""SMS through Twilio's Programmable Messaging API with the official ``twilio`` SDK.

The SDK has no base-URL option and no default timeout. The client gets an explicit HTTP
client (``http_transport.PooledTwilioHttpClient``: the SDK's ``HttpClient`` interface over
pooled keep-alive connections, with the timeout) and ``client.api.base_url =
RSN_TWILIO_BASE_URL``; its
``edge``/``region`` are cleared because ``TWILIO_EDGE``/``TWILIO_REGION`` from the
environment would rewrite that host (``127.0.0.1`` → ``127.dublin.ie1.0.1``).

Each send: the text is cut to ``RSN_SMS_MAX_SEGMENTS`` (``segments.fit_to_segments``),
then ``messages.create(to, from_ | messaging_service_sid, body, status_callback=
{RSN_PUBLIC_BASE_URL}/v1/webhooks/twilio/status)``; the provider message id is the
Message ``sid``.

Classification of ``TwilioRestException(.status, .code)``: 20429 or HTTP 429 →
``RateLimitedError`` (``Retry-After`` if the response had one); 5xx, 408, timeouts and
connection errors → ``TransientError``; 21610 (STOP), 21211, 21408, 21612, 21614 and
every other 4xx → ``PermanentError`` with ``code`` = the Twilio error code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.http_transport import PooledTwilioHttpClient
from return_notify.core.masking import mask
from return_notify.core.sms_segments import fit_to_segments
from return_notify.errors import DeliveryError, PermanentError, RateLimitedError, TransientError

logger = logging.getLogger(__name__)

STATUS_CALLBACK_PATH = "/v1/webhooks/twilio/status"


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(1.0, float(value)) if value else None
    except ValueError:
        return None


class TwilioChannel(Channel):
    """One Twilio account (and sender or Messaging Service) for SMS."""

    provider = "twilio"
    channel = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        public_base_url: str = "http://127.0.0.1:8000",
        timeout_s: float = 10.0,
        max_segments: int = 3,
    ) -> None:
        if not from_number and not messaging_service_sid:
            raise ValueError("a From number or a Messaging Service SID is required")
        self._from = from_number
        self._service = messaging_service_sid
        self._max_segments = max_segments
        self._status_callback = public_base_url.rstrip("/") + STATUS_CALLBACK_PATH
        self._base_url = base_url.rstrip("/")
        # the SDK's HttpClient interface over pooled keep-alive connections (http_transport)
        self._http = PooledTwilioHttpClient(self._base_url, timeout=timeout_s,
                                            pool_size=self.max_parallel)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._client.edge = None  # TWILIO_EDGE / TWILIO_REGION would rewrite base_url's host
        self._client.region = None
        self._client.api.base_url = self._base_url

    def resize_connections(self, size: int) -> None:
        self._http.pool.resize(size)

    def send(self, message: OutboundMessage) -> SendResult:
        body = fit_to_segments(message.text, self._max_segments)
        if body != message.text:
            logger.info("delivery %s: SMS cut from %d to %d characters to fit %d segments",
                        message.delivery_id, len(message.text), len(body), self._max_segments)
        sender: dict[str, str] = (
            {"from_": self._from} if self._from else {"messaging_service_sid": self._service or ""}
        )
        try:
            # the delivery id in the callback URL (covered by Twilio's signature) lets a
            # status arriving before the send is recorded still find its delivery
            callback = f"{self._status_callback}?delivery_id={message.delivery_id}"
            created = self._client.messages.create(
                to=message.recipient, body=body, status_callback=callback, **sender
            )
        except TwilioException as exc:
            raise self._log(message, self._classify(exc)) from exc
        except OSError as exc:  # timeouts, refused and reset connections
            error = TransientError(f"Twilio unreachable: {type(exc).__name__}: {exc}",
                                   code="connection", provider=self.provider)
            raise self._log(message, error) from exc
        logger.debug("delivery %s to %s accepted by twilio as %s",
                     message.delivery_id, mask(message.recipient), created.sid)
        return SendResult(self.provider, created.sid or "", str(created.status or "queued"))

    def _classify(self, exc: TwilioException) -> DeliveryError:
        status = getattr(exc, "status", None)
        code = getattr(exc, "code", None)
        text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", None)
        message = f"Twilio {status} ({code}): {text or type(exc).__name__}"
        code_s = str(code or status or "unknown")
        if code == 20429 or status == 429:
            return RateLimitedError(message, code=code_s, provider=self.provider,
                                    retry_after_s=_retry_after_s(self._http.last_headers()))
        if not isinstance(status, int) or status >= 500 or status == 408:
            return TransientError(message, code=code_s, provider=self.provider)
        return PermanentError(message, code=code_s, provider=self.provider)

    def _log(self, message: OutboundMessage, error: DeliveryError) -> DeliveryError:
        logger.info("delivery %s to %s: twilio %s %s", message.delivery_id,
                    mask(message.recipient), type(error).__name__, error.code)
        return error

    def close(self) -> None:
        super().close()
        self._http.pool.close()
