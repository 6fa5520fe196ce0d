"""Ways in from existing systems: carrier tracking webhooks and YAML-mapped WMS/ERP feeds.

* ``POST /v1/carriers/{easypost|aftership|shippo}?tenant=<slug>``: the provider's own
  webhook, verified with the tenant's secret for that provider (EasyPost ``X-Hmac-Signature``,
  AfterShip ``aftership-hmac-sha256``, Shippo ``?token=``) before anything is read. Forged →
  403 and nothing is published or stored. An unknown tracking number → 202
  ``{"matched": false}`` and a row in ``unmatched_carrier_events``.
* ``POST /v1/sources/{source}/events`` (tenant API key): a feed's own JSON, turned into our
  events by the ``{source}`` mapping; all-or-nothing like ``POST /v1/events``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from return_notify.api.auth import Tenant
from return_notify.api.events import RETRY_AFTER_S, read_limited_body
from return_notify.api.limits import BODY_CEILING, GuardedRoute, JsonTooDeep, loads_limited
from return_notify.config.settings import get_settings
from return_notify.errors import EventValidationError, PublishError
from return_notify.events import parse_event
from return_notify.producer import publish_raw_batches
from return_notify.sources.base import CarrierPayloadError
from return_notify.sources.carrier_events import (
    PROVIDERS,
    get_secret,
    handle_update,
    list_unmatched,
    set_secret,
)
from return_notify.sources.mapping import MAX_RECORDS, MappedRecord, Problem, SourceMapping
from return_notify.sources.mapping_files import get_mapping, load_all
from return_notify.sources.tracking import find_return_by_ref
from return_notify.storage.db import session_scope
from return_notify.storage.tenants import find_tenant_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["sources"], route_class=GuardedRoute)

Provider = Literal["easypost", "aftership", "shippo"]
_SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def publish_events(payloads: list[dict[str, Any]]) -> int:
    """Hand validated payloads to the ingest queue as one message, retrying briefly."""
    timeout = get_settings().api_publish_timeout_s
    policy = {"max_retries": max(1, int(timeout / 0.5)), "interval_start": 0.0,
              "interval_step": 0.5, "interval_max": 0.5}
    return publish_raw_batches([payloads], settings=get_settings(), retry_policy=policy)


def _unavailable() -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_S)},
                        content={"detail": "the event broker is unreachable; nothing was "
                                 f"accepted. Retry after {RETRY_AFTER_S} s."})


# ------------------------------------------------------------------ carriers ----------

def _carrier(provider: str, tenant: str, body: bytes, headers: dict[str, str],
             query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """(status, response, payload to publish) for one carrier webhook; sync (threadpool)."""
    adapter = PROVIDERS[provider]
    with session_scope() as s:
        tenant_id = find_tenant_id(s, tenant)
        secret = get_secret(s, tenant_id, provider) if tenant_id is not None else None
    if tenant_id is None or secret is None:
        log.warning("%s webhook for tenant %r: no such tenant or no %s secret configured",
                    provider, tenant, provider)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="signature verification failed")
    if not adapter.verify(body, headers, query, secret):
        log.warning("%s webhook for tenant %s: invalid signature", provider, tenant)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="signature verification failed")
    try:
        update = adapter.parse(json.loads(body))
    except ValueError as exc:  # JSONDecodeError and CarrierPayloadError
        kind = "payload" if isinstance(exc, CarrierPayloadError) else "JSON"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"invalid {provider} {kind}: {exc}") from None
    if update is None or update.milestone is None:
        what = f"status {update.status!r}" if update else "event type"
        return 200, {"matched": None, "ignored": f"{provider} {what} means nothing to the "
                     "customer"}, None
    with session_scope() as s:
        outcome = handle_update(s, tenant_id, tenant, update)
    if not outcome.matched:
        return 202, {"matched": False, "unmatched_id": outcome.unmatched_id}, None
    assert outcome.payload is not None
    p = outcome.payload
    return 202, {"matched": True, "event_id": p["event_id"], "return_id": p["return_id"],
                 "milestone": p["milestone"]}, p


@router.post(
    "/v1/carriers/{provider}",
    max_body_size=BODY_CEILING,  # RSN_CARRIER_MAX_BODY_BYTES is enforced while reading
    summary="A tracking provider's webhook (EasyPost, AfterShip, Shippo), signature-checked",
    responses={
        200: {"description": "Verified, but says nothing to the customer (ignored)"},
        202: {"description": "Matched and published (`matched: true`), or kept as unmatched",
              "content": {"application/json": {"example": {
                  "matched": True, "event_id": "easypost:trk_1:in_transit:2026-12-02",
                  "return_id": "RMA-100042", "milestone": "in_transit"}}}},
        403: {"description": "Unknown tenant, no secret for this provider, or a bad signature"},
        422: {"description": "Signed, but not the provider's documented payload"},
        503: {"description": "Broker unreachable; the provider will retry"},
    },
)
async def carrier_webhook(
    request: Request,
    provider: Annotated[Provider, Path(description="Tracking provider")],
    tenant: Annotated[str, Query(pattern=_SLUG, description="The tenant the webhook is for")],
) -> JSONResponse:
    """Configure the provider to call ``…/v1/carriers/<provider>?tenant=<slug>`` (Shippo:
    ``&token=<secret>``) and store the shared secret with ``return-notify carriers secret``."""
    body = await read_limited_body(request, get_settings().carrier_max_body_bytes)
    headers = {k.lower(): v for k, v in request.headers.items()}
    code, content, payload = await run_in_threadpool(
        _carrier, provider, tenant, body, headers, dict(request.query_params))
    if payload is not None:
        try:
            await run_in_threadpool(publish_events, [payload])
        except PublishError:
            log.error("%s webhook for %s: broker unreachable", provider, tenant)
            return _unavailable()
        log.info("%s webhook for %s: %s published", provider, tenant, payload["event_id"])
    return JSONResponse(status_code=code, content=content)


class SecretIn(BaseModel):
    secret: str = Field(min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$",
                        description="The webhook secret the provider signs with "
                                    "(printable ASCII, no spaces)")


@router.put("/v1/carriers/{provider}/secret", status_code=status.HTTP_204_NO_CONTENT,
            summary="Set or rotate this tenant's webhook secret for a provider")
def put_carrier_secret(tenant: Tenant, provider: Provider, body: SecretIn) -> Response:
    with session_scope() as s:
        set_secret(s, tenant.tenant_id, provider, body.secret)
    log.info("%s webhook secret set for %s", provider, tenant.slug)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/carriers/unmatched", summary="Carrier updates no return matched (yet)")
def get_unmatched(tenant: Tenant, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  ) -> list[dict[str, Any]]:
    with session_scope() as s:
        rows = list_unmatched(s, tenant.tenant_id, limit)
    return [{k: v for k, v in r.items() if k != "tenant"} for r in rows]


# ------------------------------------------------------------------ feeds -------------

def _fill_customers(tenant_id: int, records: list[MappedRecord]) -> None:
    """``customer_from_return``: the customer (and region, category) of the return's
    earlier events, under whatever the payload itself gave; a problem when there is none."""
    todo = [r for r in records if r.event is not None and not r.problems
            and not (r.event.get("customer") or {}).get("id")]
    if not todo:
        return
    with session_scope() as s:
        for rec in todo:
            assert rec.event is not None
            known = find_return_by_ref(s, tenant_id, rec.event["return_id"])
            if known is None:
                rec.problems.append(Problem(rec.index, "customer", (
                    f"the payload has no customer and return {rec.event['return_id']!r} has no "
                    "earlier events to take one from")))
                continue
            ev = rec.event
            ev["customer"] = {**known.customer, **(ev.get("customer") or {})}
            if known.region:
                ev.setdefault("region", known.region)
            if known.product_category:
                ev.setdefault("product_category", known.product_category)
            try:
                rec.event = parse_event(ev).model_dump(mode="json", exclude_none=True)
            except EventValidationError as exc:
                rec.problems.extend(Problem(rec.index, e["field"], e["message"]) for e in exc.errors)


def _map_feed(mapping: SourceMapping, payload: Any, tenant_id: int, slug: str
              ) -> list[MappedRecord]:
    records = mapping.apply(payload, slug)
    if mapping.customer_from_return:
        _fill_customers(tenant_id, records)
    return records


@router.get("/v1/sources", summary="The feed mappings this tenant can post to")
def get_sources(tenant: Tenant) -> list[dict[str, Any]]:
    mappings, _ = load_all()
    return [{"source": m.source, "description": m.description,
             "url": f"/v1/sources/{m.source}/events"}
            for m in sorted(mappings.values(), key=lambda m: m.source) if m.allows(tenant.slug)]


@router.post(
    "/v1/sources/{source}/events",
    status_code=status.HTTP_202_ACCEPTED,
    max_body_size=BODY_CEILING,  # read after the key checks out, under the events cap
    summary="A WMS/ERP posts its own JSON (object or array); the source's mapping makes events",
    responses={
        200: {"description": "dry_run: the events it would publish"},
        202: {"description": "Accepted", "content": {"application/json": {"example": {
            "accepted": ["wms-RCPT-88121-RCV"], "skipped": []}}}},
        401: {"description": "Missing or invalid API key"},
        404: {"description": "No mapping for this source (for this tenant)"},
        422: {"description": "Per-record mapping and contract problems; nothing was accepted"},
        503: {"description": "Broker unreachable; retry after Retry-After seconds"},
    },
)
async def post_source_events(
    request: Request, tenant: Tenant,
    source: Annotated[str, Path(pattern=_SLUG, description="The mapping's `source` name")],
    dry_run: Annotated[bool, Query(description="Map and check, publish nothing")] = False,
) -> JSONResponse:
    mapping = get_mapping(source)
    if mapping is None or not mapping.allows(tenant.slug):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no mapping for source {source!r}")
    body = await read_limited_body(request)
    try:
        payload = await run_in_threadpool(loads_limited, body)
    except JsonTooDeep as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=[{"index": None, "problems": [
                                {"field": "(body)", "message": str(exc)}]}]) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=[{"index": None, "problems": [
                                {"field": "(body)", "message": f"not valid JSON: {exc}"}]}]
                            ) from None
    if len(mapping.records_of(payload)) > MAX_RECORDS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{
            "index": None, "problems": [{"field": "(body)",
                                          "message": f"at most {MAX_RECORDS} records per request"}]}])
    records = await run_in_threadpool(_map_feed, mapping, payload, tenant.tenant_id, tenant.slug)
    bad = [r for r in records if r.problems]
    if bad:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
            {"index": r.index, "event_id": (r.event or {}).get("event_id"),
             "problems": [p.as_dict() for p in r.problems]} for r in bad])
    events = [r.event for r in records if r.event is not None and r.skipped is None]
    skipped = [r.index for r in records if r.skipped is not None]
    if dry_run:
        return JSONResponse({"events": events, "skipped": skipped})
    if events:
        try:
            await run_in_threadpool(publish_events, events)  # type: ignore[arg-type]
        except PublishError:
            log.error("POST /v1/sources/%s/events for %s: broker unreachable", source, tenant.slug)
            return _unavailable()
    log.info("POST /v1/sources/%s/events: %d events accepted for %s (%d skipped)",
             source, len(events), tenant.slug, len(skipped))
    return JSONResponse(status_code=status.HTTP_202_ACCEPTED,
                        content={"accepted": [e["event_id"] for e in events if e],
                                 "skipped": skipped})

