"""Provider webhooks: Twilio status + inbound (STOP/START/HELP), SendGrid signed events.

Every request is authenticated before anything is read into the database: Twilio's
``X-Twilio-Signature`` over the PUBLIC URL (``RSN_PUBLIC_BASE_URL`` + path + query, since
behind a TLS proxy ``request.url`` is not what Twilio signed), SendGrid's ECDSA signature
over the RAW body plus a replay window on its timestamp. Forged or stale → 403, no change.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from return_notify.api.events import read_limited_body
from return_notify.api.limits import GuardedRoute, loads_limited
from return_notify.config.settings import get_settings
from return_notify.core.masking import mask
from return_notify.pipeline.feedback import (
    apply_sendgrid_events,
    apply_twilio_status,
    first_time,
)
from return_notify.policy.suppression import lift, suppress
from return_notify.storage.db import session_scope
from return_notify.storage.models import STOP
from return_notify.storage.tenants import find_tenant_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"], route_class=GuardedRoute)

MAX_TWILIO_BODY = 64 * 1024
MAX_SENDGRID_BODY = 8 * 1024 * 1024
SG_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SG_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWIML = "application/xml"
#: ``webhook_events.provider`` of inbound SMS, deduplicated by ``MessageSid``
INBOUND_PROVIDER = "twilio_inbound"

# Twilio's default opt-out / opt-in / help keywords (Advanced Opt-Out), plus the
# REVOKE and OPTOUT keywords carriers honour since the 2025 FCC consent rules.
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def public_url(request: Request) -> str:
    """The URL the provider called, as the public sees it (not as the proxy forwarded it)."""
    url = get_settings().public_base_url.rstrip("/") + request.url.path
    return url + ("?" + request.url.query if request.url.query else "")


async def twilio_params(request: Request) -> dict[str, str]:
    """The form parameters of a Twilio webhook whose signature checks out, else 403."""
    token = get_settings().twilio_auth_token
    if token is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="RSN_TWILIO_AUTH_TOKEN is not set: cannot verify Twilio")
    body = await read_limited_body(request, MAX_TWILIO_BODY)
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise _forbidden("invalid Twilio request body") from None
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        raise _forbidden("missing X-Twilio-Signature")
    if not RequestValidator(token.get_secret_value()).validate(public_url(request), params,
                                                                signature):
        log.warning("twilio webhook %s: invalid signature (check RSN_PUBLIC_BASE_URL)",
                    request.url.path)
        raise _forbidden("invalid Twilio signature")
    return params


@router.post(
    "/v1/webhooks/twilio/status", status_code=status.HTTP_204_NO_CONTENT,
    summary="Twilio message status callback (forward-only delivery state)",
    responses={403: {"description": "Signature invalid"}},
)
async def twilio_status(
    request: Request,
    delivery_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description=(
        "Set by the SMS channel in StatusCallback so the callback finds its delivery even "
        "before the send is recorded"))] = None,
) -> Response:
    params = await twilio_params(request)

    def apply() -> dict[str, int]:
        with session_scope() as session:
            return apply_twilio_status(session, params, delivery_id).summary()

    summary = await run_in_threadpool(apply)
    log.info("twilio status %s: %s", params.get("MessageStatus"), summary)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _twiml(message: str | None = None) -> Response:
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>',
                    media_type=TWIML)


def keyword(body: str) -> str | None:
    """``stop``/``start``/``help`` for an inbound SMS body, else None.

    Opt-out is honoured on the first word ("Stop texting me"), opt-in and help only on a
    message that is exactly the keyword, as carriers do.
    """
    words = body.strip().upper().replace(".", " ").replace("!", " ").split()
    if not words:
        return None
    if words[0] in STOP_WORDS:
        return "stop"
    if len(words) == 1 and words[0] in START_WORDS:
        return "start"
    if len(words) == 1 and words[0] in HELP_WORDS:
        return "help"
    return None


@router.post(
    "/v1/webhooks/twilio/inbound",
    summary="Twilio inbound SMS: STOP suppresses, START lifts, HELP replies (TwiML)",
    response_class=Response,
    responses={200: {"content": {TWIML: {}}}, 403: {"description": "Signature invalid"},
               404: {"description": "Unknown tenant in ?tenant="}},
)
async def twilio_inbound(
    request: Request,
    tenant: Annotated[str | None, Query(max_length=63, description=(
        "Tenant owning this number; omit for a number shared by every tenant (a STOP then "
        "applies to all of them, as it does at the carrier)"))] = None,
) -> Response:
    params = await twilio_params(request)
    word = keyword(params.get("Body", ""))
    sender = params.get("MessagingServiceSid") or params.get("To") or None
    address = params.get("From", "")
    message_sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if word == "help":
        return _twiml(get_settings().sms_help_text)
    if word is None or not address:
        return _twiml()
    if not message_sid:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail="MessageSid missing: an opt-out or opt-in needs the message id")

    def apply() -> int | None:
        with session_scope() as session:
            tenant_id = find_tenant_id(session, tenant) if tenant else None
            if tenant and tenant_id is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown tenant {tenant!r}")
            # a replayed or retried message (same MessageSid) changes nothing: else a START
            # replayed after a STOP would lift the opt-out
            if not first_time(session, INBOUND_PROVIDER, message_sid):
                return None
            if word == "stop":
                return int(suppress(session, tenant_id, "sms", address, STOP, sender=sender,
                                    source="twilio"))
            return lift(session, tenant_id, "sms", address, sender=sender)

    changed = await run_in_threadpool(apply)
    if changed is None:
        log.info("twilio inbound %s from %s (tenant %s): message %s seen before, ignored",
                 word.upper(), mask(address), tenant or "*", message_sid[:64])
    else:
        log.info("twilio inbound %s from %s (tenant %s): %d suppression(s) changed",
                 word.upper(), mask(address), tenant or "*", changed)
    return _twiml()


@lru_cache(maxsize=4)
def _sendgrid_verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


def verify_sendgrid(raw: bytes, signature: str | None, timestamp: str | None) -> None:
    """Raise 403 unless the body is signed by SendGrid within the replay window."""
    api = get_settings()
    if not api.sendgrid_webhook_public_key:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="RSN_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    if not signature or not timestamp:
        raise _forbidden(f"missing {SG_SIGNATURE} or {SG_TIMESTAMP}")
    # ASCII digits, at most 12 of them: int() of 5,000 digits raises, "²" passes isdigit()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) \
            or abs(time.time() - int(timestamp)) > api.webhook_replay_window_s:
        raise _forbidden("webhook timestamp outside the replay window")
    try:
        verifier = _sendgrid_verifier(api.sendgrid_webhook_public_key)
    except Exception:  # noqa: BLE001 - any parse failure is a configuration error
        log.error("RSN_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid EC public key")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the SendGrid verification key is misconfigured") from None
    try:
        ok = verifier.verify_signature(raw.decode("utf-8"), signature, timestamp)
    except Exception:  # noqa: BLE001 - undecodable body or signature: not verified
        ok = False
    if not ok:
        raise _forbidden("invalid SendGrid signature")


@router.post(
    "/v1/webhooks/sendgrid/events",
    max_body_size=MAX_SENDGRID_BODY,
    summary="SendGrid signed Event Webhook: delivered / bounce / dropped / spam / unsubscribe "
            "/ open / click",
    responses={200: {"content": {"application/json": {"example": {
        "received": 3, "applied": 1, "duplicates": 1, "unmatched": 0, "suppressed": 1,
        "lifted": 0, "ignored": 0, "engagement": 1}}}},
        403: {"description": "Signature invalid or timestamp outside the replay window"}},
)
async def sendgrid_events(request: Request) -> dict[str, Any]:
    raw = await read_limited_body(request, MAX_SENDGRID_BODY)
    verify_sendgrid(raw, request.headers.get(SG_SIGNATURE), request.headers.get(SG_TIMESTAMP))
    try:
        events = await run_in_threadpool(loads_limited, raw)
    except ValueError:  # JsonTooDeep included
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="body is not JSON") from None
    if not isinstance(events, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="expected a JSON array of events")

    def apply() -> dict[str, int]:
        with session_scope() as session:
            return apply_sendgrid_events(session, events).summary()

    summary = await run_in_threadpool(apply)
    log.info("sendgrid events: %s", summary)
    return summary
