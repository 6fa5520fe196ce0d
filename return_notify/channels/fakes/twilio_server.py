"""A local server speaking Twilio's Programmable Messaging API (create a Message) for tests.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth
(AccountSid:AuthToken) and a form body (``To``, ``From`` or ``MessagingServiceSid``,
``Body``, ``StatusCallback``) answers ``201`` with the documented Message resource
(``sid`` "SM" + 32 hex, ``status`` "queued", ``num_segments``, ``date_created`` ...), and
errors with Twilio's JSON body ``{"code", "message", "more_info", "status"}``: 401/20003
for bad credentials, 400/2160x for missing fields, 21211 for a To that is not E.164.

Twilio's magic test numbers behave as documented for test credentials: To
``+15005550001`` → 21211, ``…0002`` → 21612, ``…0003`` → 21408, ``…0004`` → 21610
(STOP), ``…0009`` → 21614; From ``+15005550001`` → 21212, ``…0007`` → 21606,
``…0008`` → 21611. Two more of ours: To ``+15005550429`` → 429/20429 and
``+15005550500`` → 500. Faults, latency and records: see ``control.py``.

Run as a process: ``python -m return_notify.channels.fakes.twilio_server --port 8025``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import math
import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from return_notify.channels.fakes import Fault, RateWindow, RecordedRequest, Reply, json_reply, run_cli
from return_notify.channels.fakes.control import FakeProviderServer
from return_notify.core.sms_segments import count_segments

FAKE_ACCOUNT_SID = "AC" + "0" * 30 + "fa"
FAKE_AUTH_TOKEN = "fake-twilio-auth-token"
API_VERSION = "2010-04-01"

_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")

ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21212: (400, "Invalid From Number (caller ID)"),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated "
                 "by the 'To' number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable Twilio "
                 "phone number for this destination/account"),
    21609: (400, "Invalid StatusCallback url"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21611: (400, "This 'From' number has exceeded the maximum number of queued messages"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit"),
    21701: (400, "The Messaging Service Sid is invalid"),
}
MAGIC_TO: dict[str, int] = {
    "+15005550001": 21211, "+15005550002": 21612, "+15005550003": 21408,
    "+15005550004": 21610, "+15005550009": 21614, "+15005550429": 20429,
    "+15005550500": 20500,
}
MAGIC_FROM: dict[str, int] = {"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}


def error_reply(code: int, status: int | None = None, message: str | None = None,
                headers: dict[str, str] | None = None) -> Reply:
    """Twilio's error body; status and message default to the documented ones for ``code``."""
    default_status, default_message = ERRORS.get(code, (400, "Bad Request"))
    status = status or default_status
    return json_reply(status, {
        "code": code, "message": message or default_message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status,
    }, headers)


class TwilioFakeServer(FakeProviderServer):
    """Twilio Messages API on 127.0.0.1 (see the module docstring)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        rate_limit_per_s: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._window = RateWindow(rate_limit_per_s) if rate_limit_per_s else None

    def messages(self) -> list[RecordedRequest]:
        """Recorded create-Message calls (whatever the answer was)."""
        return [r for r in self.requests() if r.path.endswith("/Messages.json")]

    def _authenticated(self, request: RecordedRequest) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    def handle_api(self, request: RecordedRequest) -> Reply:
        match = _MESSAGES_PATH.match(request.path)
        if not self._authenticated(request):
            return error_reply(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if match is None or request.method != "POST" or match.group("sid") != self.account_sid:
            return error_reply(20404, message=f"The requested resource {request.path} was not found")
        if self._window is not None and not self._window.take()[0]:
            return error_reply(20429)
        form: dict[str, str] = request.body if isinstance(request.body, dict) else {}
        code = self._validate(form)
        if code is not None:
            return error_reply(code)
        return json_reply(201, self._message_resource(form))

    @staticmethod
    def _validate(form: dict[str, str]) -> int | None:
        to, sender, service = form.get("To", ""), form.get("From", ""), form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        if not to:
            return 21604
        if not sender and not service:
            return 21603
        if service and not _SERVICE_SID.match(service):
            return 21701
        if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
            return 21602
        if len(body) > 1600:
            return 21617
        if to in MAGIC_TO:
            return MAGIC_TO[to]
        if not _E164.fullmatch(to):
            return 21211
        if sender in MAGIC_FROM:
            return MAGIC_FROM[sender]
        if sender and not (_E164.fullmatch(sender) or _ALPHA_SENDER.fullmatch(sender)):
            return 21212
        callback = form.get("StatusCallback", "")
        if callback and not callback.startswith(("http://", "https://")):
            return 21609
        return None

    def _message_resource(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))  # RFC 2822, +0000 like Twilio
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        sender = form.get("From") or None
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION,
            "body": form.get("Body", ""), "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": sender,
            "messaging_service_sid": form.get("MessagingServiceSid") or None,
            "num_media": "0", "num_segments": str(count_segments(form.get("Body", ""))),
            "price": None, "price_unit": "USD", "sid": sid,
            # Without From, Twilio first "accepts" and picks a sender from the service.
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            "to": form.get("To"), "uri": f"{base}.json",
        }

    def render_fault(self, fault: Fault, request: RecordedRequest) -> Reply:
        if fault.kind == "rate_limit":
            return error_reply(
                fault.code or 20429, status=fault.status or 429, message=fault.message,
                headers={"Retry-After": str(max(1, math.ceil(fault.retry_after_s)))},
            )
        if fault.kind == "server_error":
            status = fault.status or 500
            return error_reply(fault.code or (20503 if status == 503 else 20500), status=status,
                               message=fault.message)
        code = fault.code or 21211
        return error_reply(code, status=fault.status, message=fault.message)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account-sid", default=FAKE_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=FAKE_AUTH_TOKEN)
    parser.add_argument("--rate-limit-per-s", type=int, default=None,
                        help="answer 429/20429 beyond this many calls per second")


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        lambda a: TwilioFakeServer(
            account_sid=a.account_sid, auth_token=a.auth_token, rate_limit_per_s=a.rate_limit_per_s,
            host=a.host, port=a.port, latency_ms=a.latency_ms, seed=a.seed,
        ),
        "Local Twilio Messages API for tests, the demo and benchmarks.",
        _add_arguments,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
