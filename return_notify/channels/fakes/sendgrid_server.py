"""A local server speaking SendGrid's v3 Mail Send API for tests, the demo and benchmarks.

``POST /v3/mail/send`` with ``Authorization: Bearer <key>`` and a JSON body is validated
the way SendGrid documents it (personalizations[].to[].email, from.email, subject unless
a template or every personalization has one, content[] with text/plain before
text/html, string-valued headers and custom_args, no reserved headers) and answered
``202`` with an empty body and an ``X-Message-Id`` header; a bad body gets ``400`` with
``{"errors": [{"message", "field", "help": null}, ...]}``, a bad key ``401``. Every answer
carries ``X-RateLimit-Limit/-Remaining/-Reset`` (a real one-second window, default
10,000/s, so a lower ``rate_limit_per_s`` produces genuine 429s).

Magic recipients (ours, not SendGrid's): a ``to`` address whose local part contains
``+fail-<status>`` (``ann+fail-400@example.com``, ``+fail-429``, ``+fail-503``) is answered
with that status. Faults, latency and records: see ``control.py``.

Run as a process: ``python -m return_notify.channels.fakes.sendgrid_server --port 8026``.
"""

from __future__ import annotations

import argparse
import base64
import math
import re
import time
import uuid
from typing import Any

from return_notify.channels.fakes import Fault, RateWindow, RecordedRequest, Reply, json_reply, run_cli
from return_notify.channels.fakes.control import FakeProviderServer

FAKE_API_KEY = "SG.fake-sendgrid-key.local"

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$", re.ASCII)
_MAGIC = re.compile(r"\+fail-(\d{3})@")  # in a to address
RESERVED_HEADERS = frozenset({
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
})
_MESSAGES: dict[int, str] = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "The from address does not match a verified Sender Identity. Mail cannot be sent "
         "until this error is resolved.",
    413: "Payload Too Large",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}

Error = tuple[str, str | None]  # (message, field)


def errors_reply(status: int, errors: list[Error], headers: dict[str, str]) -> Reply:
    body = {"errors": [{"message": m, "field": f, "help": None} for m, f in errors]}
    return json_reply(status, body, headers)


def _check_email(obj: Any, field: str, errors: list[Error], required_message: str) -> None:
    if not isinstance(obj, dict) or not obj.get("email"):
        errors.append((required_message, field))
    elif not isinstance(obj["email"], str) or not _EMAIL.fullmatch(obj["email"]):
        errors.append(("Does not contain a valid address.", f"{field}.email"))


def validate_mail(body: Any) -> list[Error]:
    """The documented checks of ``POST /v3/mail/send``; an empty list means valid."""
    if not isinstance(body, dict):
        return [("Bad Request", None)]
    errors: list[Error] = []
    has_template = bool(body.get("template_id"))
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(("The personalizations field is required and must have at least one "
                       "personalization.", "personalizations"))
        personalizations = []
    for i, p in enumerate(personalizations):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            errors.append(("The to array is required for all personalization objects, and must "
                           "have at least one email object with a valid email address.",
                           f"personalizations.{i}.to"))
            continue
        for j, rcpt in enumerate(to):
            _check_email(rcpt, f"personalizations.{i}.to.{j}", errors, "Does not contain a valid address.")
    _check_email(body.get("from"), "from", errors,
                 "The from object must be provided for every email send. It is an object that "
                 "requires the email parameter, but may also contain a name parameter.")
    if "reply_to" in body:
        _check_email(body["reply_to"], "reply_to", errors, "The reply_to email does not contain "
                     "a valid address.")
    every_p_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not has_template and not every_p_subject and not (
        isinstance(body.get("subject"), str) and body["subject"]
    ):
        errors.append(("The subject is required. You can get around this requirement if you use "
                       "a template with a subject defined or if every personalization has a "
                       "subject defined.", "subject"))
    errors += _validate_content(body.get("content"), has_template)
    errors += _validate_string_map(body.get("headers"), "headers", reserved=True)
    errors += _validate_string_map(body.get("custom_args"), "custom_args", reserved=False)
    return errors


def _validate_content(content: Any, has_template: bool) -> list[Error]:
    if content is None and has_template:
        return []
    if not isinstance(content, list) or not content:
        return [("Unless a valid template_id is provided, the content parameter is required. "
                 "There must be at least one defined content block. We typically suggest both "
                 "text/plain and text/html blocks are included, but only one block is required.",
                 "content")]
    errors: list[Error] = []
    types = []
    for i, block in enumerate(content):
        value = block.get("value") if isinstance(block, dict) else None
        if not isinstance(value, str) or not value:
            errors.append(("The content value must be a string at least one character in length.",
                           f"content.{i}.value"))
        types.append(block.get("type") if isinstance(block, dict) else None)
    if "text/html" in types and "text/plain" in types and types.index("text/plain") > types.index(
        "text/html"
    ):
        errors.append(("If present, text/plain and text/html may only be provided in this order.",
                       "content"))
    return errors


def _validate_string_map(value: Any, field: str, reserved: bool) -> list[Error]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(f"{field} must be an object.", field)]
    errors: list[Error] = []
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append((f"{field} values must be strings.", f"{field}.{key}"))
        if reserved and key.lower() in RESERVED_HEADERS:
            errors.append((f"The header {key} is reserved and cannot be set.", f"{field}.{key}"))
    return errors


class SendGridFakeServer(FakeProviderServer):
    """SendGrid v3 Mail Send on 127.0.0.1 (see the module docstring)."""

    name = "sendgrid"

    def __init__(
        self, api_key: str = FAKE_API_KEY, rate_limit_per_s: int = 10_000, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self._window = RateWindow(rate_limit_per_s)

    def mails(self) -> list[RecordedRequest]:
        """Recorded mail/send calls (whatever the answer was)."""
        return [r for r in self.requests() if r.path == "/v3/mail/send"]

    def _rate_headers(self) -> tuple[bool, dict[str, str]]:
        allowed, limit, remaining, reset = self._window.take()
        return allowed, {
            "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def handle_api(self, request: RecordedRequest) -> Reply:
        allowed, headers = self._rate_headers()
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return errors_reply(401, [("authorization required", None)], headers)
        if auth[7:] != self.api_key:
            return errors_reply(401, [(_MESSAGES[401], None)], headers)
        if request.path != "/v3/mail/send" or request.method != "POST":
            return errors_reply(404, [("not found", None)], headers)
        if not allowed:
            return errors_reply(429, [(_MESSAGES[429], None)], headers)
        errors = validate_mail(request.body)
        if errors:
            return errors_reply(400, errors, headers)
        recipients = " ".join(str(t.get("email")) for p in request.body["personalizations"]
                              for t in p["to"])
        magic = _MAGIC.search(recipients)
        if magic:
            status = int(magic.group(1))
            return errors_reply(status, [(_MESSAGES.get(status, "error"), None)], headers)
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        return Reply(202, b"", {**headers, "X-Message-Id": message_id})

    def render_fault(self, fault: Fault, request: RecordedRequest) -> Reply:
        _, headers = self._rate_headers()
        if fault.kind == "rate_limit":
            status = fault.status or 429
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + fault.retry_after_s))
        elif fault.kind == "server_error":
            status = fault.status or 500
        else:
            status = fault.status or 400
        message = fault.message or (
            "Does not contain a valid address." if status == 400 else _MESSAGES.get(status, "error")
        )
        field = "personalizations.0.to.0.email" if status == 400 and not fault.message else None
        return errors_reply(status, [(message, field)], headers)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", default=FAKE_API_KEY)
    parser.add_argument("--rate-limit-per-s", type=int, default=10_000,
                        help="answer 429 beyond this many calls per second")


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        lambda a: SendGridFakeServer(
            api_key=a.api_key, rate_limit_per_s=a.rate_limit_per_s,
            host=a.host, port=a.port, latency_ms=a.latency_ms, seed=a.seed,
        ),
        "Local SendGrid v3 Mail Send API for tests, the demo and benchmarks.",
        _add_arguments,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
