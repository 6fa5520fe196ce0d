"""``POST /v1/events``: the HTTP way in (DESIGN §4), all-or-nothing per request.

Every event is validated before anything is sent, and the accepted events go to the
broker as ONE ingest message, so a request is never half-published: it is either all
accepted (202) or nothing is (422 / 403 / 503).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from return_notify.api.auth import Tenant
from return_notify.api.limits import BODY_CEILING, GuardedRoute, JsonTooDeep, loads_limited
from return_notify.config.settings import get_settings
from return_notify.errors import EventValidationError, PublishError
from return_notify.events import MAX_DEPTH, parse_event
from return_notify.producer import publish_raw_batches

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"], route_class=GuardedRoute)

MAX_EVENTS = 1000
RETRY_AFTER_S = 5

_EXAMPLE = {
    "event_id": "wms-000123", "tenant": "acme", "return_id": "RMA-100042",
    "milestone": "warehouse_received", "occurred_at": "2026-11-28T09:30:00+01:00",
    "customer": {"id": "c-42", "name": "Ana", "email": "ana@example.com", "locale": "en-US"},
    "data": {"carrier": "ups"},
}


def _body_error(message: str, kind: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"index": None, "event_id": None,
         "errors": [{"field": "(body)", "message": message, "type": kind}]}])


def events_body_cap() -> int:
    """``RSN_API_EVENTS_MAX_BODY_BYTES``: the body cap of the routes that take event batches."""
    return get_settings().api_events_max_body_bytes


async def read_limited_body(request: Request, limit: int | None = None) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` (default: the events cap)
    before reading it all: by its Content-Length, else as soon as the stream passes it."""
    limit = events_body_cap() if limit is None else limit
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and len(declared) < 20 \
            and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            detail=f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                detail=f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def validate_events(raw: Any, tenant_slug: str) -> list[dict[str, Any]]:
    """Decoded JSON → contract-valid payloads, or an ``HTTPException`` (403 / 422)."""
    items = raw if isinstance(raw, list) else [raw]
    if isinstance(raw, list) and not raw:
        raise _body_error("the array is empty: send at least one event", "empty")
    if len(items) > MAX_EVENTS:
        raise _body_error(f"at most {MAX_EVENTS} events per request; got {len(items)}",
                          "too_many")
    foreign = [i for i, item in enumerate(items)
               if isinstance(item, dict) and isinstance(item.get("tenant"), str)
               and item["tenant"].strip() != tenant_slug]
    if foreign:
        shown = ", ".join(map(str, foreign[:20])) + (" …" if len(foreign) > 20 else "")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=(
            f"this API key belongs to tenant {tenant_slug!r}; events at index {shown} name "
            "another tenant. Nothing was accepted."))
    payloads: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):  # parse_event would also decode a JSON *string*
            problems.append({"index": i, "event_id": None, "errors": [
                {"field": "(event)", "message": "must be a JSON object", "type": "type"}]})
            continue
        try:
            payloads.append(parse_event(item).model_dump(mode="json", exclude_none=True))
        except EventValidationError as exc:
            problems.append({"index": i, "event_id": exc.event_id, "errors": exc.errors})
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems)
    return payloads


def _publish(payloads: list[dict[str, Any]]) -> int:
    timeout = get_settings().api_publish_timeout_s
    policy = {"max_retries": max(1, int(timeout / 0.5)), "interval_start": 0.0,
              "interval_step": 0.5, "interval_max": 0.5}
    return publish_raw_batches([payloads], settings=get_settings(), retry_policy=policy)


def _unavailable_detail(published: int, total: int) -> str:
    done = ("nothing was accepted" if not published
            else f"{published} of {total} events reached the broker before it failed")
    return (f"the event broker is unreachable; {done}. Retry after {RETRY_AFTER_S} s "
            "with the same events (event ids make resending safe).")


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    max_body_size=BODY_CEILING,  # read after the key checks out, under the events cap
    summary="Publish one return event or an array of up to 1000",
    responses={
        202: {"description": "Accepted for processing",
              "content": {"application/json": {"example": {"accepted": ["wms-000123"]}}}},
        401: {"description": "Missing or invalid API key"},
        403: {"description": "An event names another tenant than the API key's"},
        413: {"description": "Body too large"},
        422: {"description": "Per-event, per-field errors; nothing was accepted"},
        503: {"description": "Broker unreachable; retry after Retry-After seconds"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [{"$ref": "#/components/schemas/ReturnEvent"},
                             {"type": "array", "maxItems": MAX_EVENTS,
                              "items": {"$ref": "#/components/schemas/ReturnEvent"}}]},
        "example": _EXAMPLE}}}},
)
async def post_events(request: Request, tenant: Tenant) -> JSONResponse:
    """Validate every event (schema v1, DESIGN §3) and hand them to the ingest queue.

    Idempotent: resending an accepted event is a no-op downstream (``event_id``).
    """
    body = await read_limited_body(request)
    try:
        raw = await run_in_threadpool(loads_limited, body)
    except JsonTooDeep as exc:
        raise _body_error(f"{exc}: events nest at most {MAX_DEPTH} levels", "depth") from None
    except ValueError as exc:
        raise _body_error(f"body is not valid JSON: {exc}", "json") from None
    payloads = await run_in_threadpool(validate_events, raw, tenant.slug)
    try:
        await run_in_threadpool(_publish, payloads)
    except PublishError as exc:
        log.error("POST /v1/events for %s: broker unreachable (%d events not accepted)",
                  tenant.slug, len(payloads))
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            content={"detail": _unavailable_detail(exc.published, len(payloads)),
                     "published": exc.published},
        )
    log.info("POST /v1/events: %d events accepted for %s", len(payloads), tenant.slug)
    return JSONResponse(status_code=status.HTTP_202_ACCEPTED,
                        content={"accepted": [p["event_id"] for p in payloads]})
