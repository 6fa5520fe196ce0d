"""The customer inbox for the retailer's app: list, mark read, and a live SSE stream.

Authenticated per customer by an inbox token (``Authorization: Bearer`` or ``?token=``)
that the retailer's backend mints with ``return_notify.inbox.mint_inbox_token``.

Items are handed out as the tenant's insights switches say (``pipeline.engagement``): with
tracking on (and the customer not opted out) ``cta_url`` is a tracked ``/r/`` link, and the
survey's milestones carry ``rating_url``/``rating_urls``; the stored items never change.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Header, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from return_notify.api.auth import Customer, CustomerAuth
from return_notify.api.limits import GuardedRoute
from return_notify.api.live import END, HubFull, Subscription, TooManyStreams, get_hub
from return_notify.config.settings import get_settings
from return_notify.core.masking import mask
from return_notify.inbox import (
    inbox_channel_name,
    list_items,
    mark_all_read,
    mark_read,
    unread_count,
)
from return_notify.pipeline.engagement import InboxLinks, inbox_links
from return_notify.storage.db import session_scope
from return_notify.templating.links import cached_link_key

log = logging.getLogger(__name__)
router = APIRouter(tags=["inbox"], route_class=GuardedRoute)

_MAX_ID = 2**63 - 1
PING_S = 15
RECONNECT_MS = 3000
CATCH_UP_MAX = 100


class InboxItemView(BaseModel):
    id: str
    title: str | None
    body: str
    cta_url: str | None
    milestone: str | None
    return_id: str | None
    created_at: str
    read_at: str | None
    rating_url: str | None = Field(
        default=None, description="The satisfaction page (the survey's milestones only)")
    rating_urls: dict[str, str] | None = Field(
        default=None, description="Score (1-5) → one-click rating link")


class InboxPage(BaseModel):
    items: list[InboxItemView]
    next_cursor: str | None
    unread_count: int


class ReadResult(BaseModel):
    item: InboxItemView
    unread_count: int


class ReadAllResult(BaseModel):
    updated: int
    unread_count: int


def _links(session: Any, customer: CustomerAuth) -> InboxLinks | None:
    settings = get_settings()
    secret = settings.link_secret
    return inbox_links(session, customer.tenant_id, customer.customer_id,
                       settings.public_base_url,
                       cached_link_key(secret.get_secret_value()) if secret else None)


def _shown(session: Any, customer: CustomerAuth, items: list[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    links = _links(session, customer)
    return links.apply(session, items) if links is not None else items
_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"


def _item_id(value: str, what: str) -> int:
    if not _ID.fullmatch(value) or int(value) > _MAX_ID:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=what)
    return int(value)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    return _item_id(cursor, "cursor must be the next_cursor of a previous page")


@router.get("/v1/inbox", response_model=InboxPage, summary="The customer's inbox, newest first")
def get_inbox(
    customer: Customer,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the "
                                        "previous page")] = None,
    unread_only: Annotated[bool, Query(description="Only unread items")] = False,
) -> dict[str, Any]:
    with session_scope() as s:
        items, next_cursor = list_items(s, customer.tenant_id, customer.customer_id, limit=limit,
                                        before_id=_cursor(cursor), unread_only=unread_only)
        items = _shown(s, customer, items)
        unread = unread_count(s, customer.tenant_id, customer.customer_id)
    return {"items": items, "next_cursor": next_cursor, "unread_count": unread}


@router.post("/v1/inbox/read-all", response_model=ReadAllResult, summary="Mark every item read")
def read_all(customer: Customer) -> dict[str, Any]:
    with session_scope() as s:
        updated = mark_all_read(s, customer.tenant_id, customer.customer_id)
    return {"updated": updated, "unread_count": 0}


@router.post("/v1/inbox/{item_id}/read", response_model=ReadResult,
             summary="Mark one item read (idempotent)",
             responses={404: {"description": "No such item in this customer's inbox"}})
def read_one(customer: Customer, item_id: Annotated[int, Path(ge=1, le=_MAX_ID)]) -> dict[str, Any]:
    with session_scope() as s:
        item = mark_read(s, customer.tenant_id, customer.customer_id, item_id)
        if item is not None:
            item = _shown(s, customer, [item])[0]
        unread = unread_count(s, customer.tenant_id, customer.customer_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no inbox item {item_id}")
    return {"item": item, "unread_count": unread}


def _since(customer: CustomerAuth, last_id: int
           ) -> tuple[list[dict[str, Any]], int, InboxLinks | None]:
    """Items a reconnecting client missed (after ``Last-Event-ID``), oldest first, and how
    the live ones are rewritten."""
    tenant_id, customer_id = customer.tenant_id, customer.customer_id
    with session_scope() as s:
        items: list[dict[str, Any]] = []
        cursor: int | None = None
        while len(items) < CATCH_UP_MAX:
            page, nxt = list_items(s, tenant_id, customer_id, limit=CATCH_UP_MAX,
                                   before_id=cursor)
            fresh = [i for i in page if int(i["id"]) > last_id]
            items += fresh
            if nxt is None or len(fresh) < len(page):
                break
            cursor = int(nxt)
        unread = unread_count(s, tenant_id, customer_id)
        links = _links(s, customer)
        shown = links.apply(s, items[:CATCH_UP_MAX]) if links is not None else items
    return list(reversed(shown[:CATCH_UP_MAX])), unread, links


def _live_item(links: InboxLinks, item: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as s:
        return links.apply(s, [item])[0]


@router.get(
    "/v1/inbox/stream",
    summary="Live inbox updates (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "`ready` once subscribed (with unread_count), then one "
                     "`inbox_item` per new item (id = item id), `token_expired` at the end"},
               422: {"description": "Last-Event-ID is not an item id"},
               429: {"description": "This customer has too many streams open"},
               503: {"description": "Redis unreachable, or this server is full"}},
)
async def stream(
    customer: Customer,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> EventSourceResponse:
    """For ``EventSource``: pass the token as ``?token=``; reconnects resume from the
    ``Last-Event-ID`` the browser sends, so nothing is missed between connections. A
    customer may keep ``RSN_INBOX_STREAM_MAX_PER_CUSTOMER`` streams open at once."""
    settings = get_settings()
    if not settings.broker_url:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="RSN_BROKER_URL is unset")
    # every check before anything is opened: a bad header costs no subscription
    last_id = _item_id(last_event_id, "Last-Event-ID must be the id of an inbox item") \
        if last_event_id else 0
    channel = inbox_channel_name(settings.redis_key_prefix, customer.tenant, customer.customer_id)
    try:
        sub = await get_hub().subscribe(channel, (customer.tenant_id, customer.customer_id))
    except TooManyStreams as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc),
                            headers={"Retry-After": str(RECONNECT_MS // 1000)}) from None
    except HubFull as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc),
                            headers={"Retry-After": "5"}) from None
    except (redis.RedisError, TimeoutError) as exc:
        log.warning("inbox stream: Redis unreachable (%s)", type(exc).__name__)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="live updates are unavailable; retry shortly") from None
    log.info("inbox stream opened for %s/%s", customer.tenant, mask(customer.customer_id))
    return EventSourceResponse(_events(sub, customer, last_id), ping=PING_S)


async def _events(sub: Subscription, customer: CustomerAuth, last_id: int
                  ) -> AsyncIterator[ServerSentEvent]:
    try:
        missed, unread, links = await run_in_threadpool(_since, customer, min(last_id, _MAX_ID))
        yield ServerSentEvent(event="ready", data=json.dumps({"unread_count": unread}),
                              retry=RECONNECT_MS)
        if last_id:
            for item in missed:
                yield ServerSentEvent(event="inbox_item", id=item["id"], data=json.dumps(item))
        while True:
            if time.time() >= customer.expires_at:
                yield ServerSentEvent(event="token_expired", data="{}")
                return
            message = await sub.get(timeout_s=1.0)
            if message is None:
                continue
            if message is END:  # the client's EventSource reconnects (retry above)
                log.warning("inbox stream ended: Redis connection lost")
                return
            data = message.decode() if isinstance(message, bytes) else str(message)
            try:
                item = json.loads(data)
                item_id = str(item["id"])
            except (ValueError, KeyError, TypeError):
                continue
            if links is not None and isinstance(item, dict):
                data = json.dumps(await run_in_threadpool(_live_item, links, item))
            yield ServerSentEvent(event="inbox_item", id=item_id, data=data)
    finally:
        sub.close()
