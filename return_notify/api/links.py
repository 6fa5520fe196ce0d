"""The customer's side of the insights: ``/r/{token}`` (a tracked link: record the click,
302 to where the message pointed) and ``/rate/{token}`` (the one-click satisfaction page).

Both work without JavaScript or cookies. Tokens are sealed (``templating.links``): they
name a return's notification, never a URL, so the redirect can only lead to the return's
own link (https) or its status page: no open redirect.

**People, not robots.** Mail scanners and SMS link previews fetch every link of a message.
A click or a one-click score counts only for a navigation a person's browser makes: it
sends ``Sec-Fetch-Mode: navigate``, ``Sec-Fetch-Dest: document`` and either
``Sec-Fetch-User: ?1`` (a click or tap) or ``Sec-Fetch-Site: none`` (opened from another
app). Anything else is still redirected, but not counted; a score link opened that way
shows the question with the score pre-selected, and the person's press of a button (a form
``POST``) stores it. ``HEAD`` never counts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from return_notify.api.events import read_limited_body
from return_notify.api.limits import GuardedRoute
from return_notify.config.settings import get_settings
from return_notify.pipeline.engagement import record_click, resolve_click
from return_notify.pipeline.satisfaction import Rating, current_rating, record_rating
from return_notify.storage.db import session_scope
from return_notify.templating.branding import get_branding
from return_notify.templating.links import (
    CLICK,
    RATING,
    InvalidLinkError,
    LinkTarget,
    cached_link_key,
    open_token,
    rating_path,
)
from return_notify.templating.pages import RatingPage, rating_page

log = logging.getLogger(__name__)
router = APIRouter(tags=["links"], route_class=GuardedRoute)

TokenPath = Annotated[str, Path(min_length=16, max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                                description="Token from a message's link")]
_RETURN = text("SELECT id FROM returns WHERE tenant_id = :t AND return_id = :r")
_TENANT_NAME = text("SELECT coalesce(name, slug) FROM tenants WHERE id = :t")
MAX_FORM_BYTES = 1024
PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def person_navigating(request: Request) -> bool:
    """Whether the request is a navigation a person started (see the module docstring)."""
    h = request.headers
    return (request.method == "GET" and h.get("sec-fetch-mode") == "navigate"
            and h.get("sec-fetch-dest", "document") == "document"
            and (h.get("sec-fetch-user") == "?1" or h.get("sec-fetch-site") == "none"))


def open_link(token: str) -> LinkTarget | None:
    """What ``token`` names, or None (a bad token, or no ``RSN_LINK_SECRET``)."""
    secret = get_settings().link_secret
    if secret is None:
        return None
    try:
        return open_token(token, cached_link_key(secret.get_secret_value()))
    except InvalidLinkError:
        return None


def _not_found() -> HTMLResponse:
    return HTMLResponse(rating_page(RatingPage("invalid")), status.HTTP_404_NOT_FOUND,
                        headers=PAGE_HEADERS)


# ------------------------------------------------------------------ tracked links -------

@router.head("/r/{token}", include_in_schema=False)  # link checkers: redirected, not counted
@router.get(
    "/r/{token}", response_class=RedirectResponse, status_code=status.HTTP_302_FOUND,
    summary="A tracked link: record the click (once, with consent), then 302 to its target",
    responses={302: {"description": "To the notification's https link or the return's "
                     "status page"}, 404: {"description": "Not a valid link"}},
)
async def follow(request: Request, token: TokenPath) -> Response:
    target = open_link(token)
    if target is None or target.kind != CLICK:
        return _not_found()
    count = person_navigating(request)

    def apply() -> tuple[str, bool] | None:
        with session_scope() as s:
            settings = get_settings()
            secret = settings.link_secret
            click = resolve_click(s, target, settings.public_base_url,
                                  cached_link_key(secret.get_secret_value()) if secret else None)
            if click is None:
                return None
            return click.destination, count and record_click(s, target, click,
                                                             datetime.now(UTC))

    done = await run_in_threadpool(apply)
    if done is None:
        return _not_found()
    destination, recorded = done
    log.debug("click on a %s %s link: %s", target.channel, target.milestone,
              "recorded" if recorded else "not recorded")
    return RedirectResponse(destination, status.HTTP_302_FOUND, headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex"})


# ------------------------------------------------------------------ rating page ---------

def _page(target: LinkTarget, score: int | None, store: bool, token: str) -> tuple[RatingPage, int]:
    settings = get_settings()
    window_h = settings.rating_change_window_h
    now = datetime.now(UTC)
    with session_scope() as s:
        rpk = s.execute(_RETURN, {"t": target.tenant_id, "r": target.return_id}).scalar()
        if rpk is None:
            return RatingPage("invalid", target.language), status.HTTP_404_NOT_FOUND
        branding = get_branding(s, target.tenant_id)
        name = branding.display_name or s.execute(_TENANT_NAME, {"t": target.tenant_id}).scalar()
        base: dict[str, Any] = {"language": target.language, "tenant_name": str(name or ""),
                                "return_id": target.return_id,
                                "brand_color": branding.brand_color,
                                "action": rating_path(token)}
        rating: Rating | None
        if score is not None and store:
            result = record_rating(s, target.tenant_id, int(rpk), score, source="link",
                                   at=now, window_h=window_h, channel=target.channel,
                                   milestone=target.milestone)
            rating = result.rating
        else:
            rating = current_rating(s, int(rpk), window_h, now)
    if score is not None and not store:  # a robot, or an old browser: ask to confirm
        return RatingPage("confirm", score=score, **base), status.HTTP_200_OK
    if rating is None:
        return RatingPage("ask", **base), status.HTTP_200_OK
    state: Literal["thanks", "final"] = "thanks" if rating.changeable_until is not None \
        else "final"
    return RatingPage(state, score=rating.score, changeable_until=rating.changeable_until,
                      **base), status.HTTP_200_OK


async def _rating_response(token: str, score: int | None, store: bool) -> HTMLResponse:
    target = open_link(token)
    if target is None or target.kind != RATING:
        return _not_found()
    page, code = await run_in_threadpool(_page, target, score, store, token)
    return HTMLResponse(rating_page(page), code, headers=PAGE_HEADERS)


@router.get(
    "/rate/{token}", response_class=HTMLResponse,
    summary="The satisfaction page; with ?score=1..5 a person's click stores that score",
    responses={404: {"description": "Not a valid rating link"}},
)
async def rate_page(
    request: Request, token: TokenPath,
    score: Annotated[int | None, Query(ge=1, le=5, description="One-click score")] = None,
) -> HTMLResponse:
    return await _rating_response(token, score, store=person_navigating(request))


@router.post(
    "/rate/{token}", response_class=HTMLResponse,
    summary="Store the score chosen on the satisfaction page (a form POST: score=1..5)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["score"],
            "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}}}}}}},
    responses={404: {"description": "Not a valid rating link"},
               422: {"description": "No score from 1 to 5 in the form"}},
)
async def rate(request: Request, token: TokenPath) -> HTMLResponse:
    """What the page's buttons send; idempotent (the same score again changes nothing)."""
    raw = await read_limited_body(request, MAX_FORM_BYTES)
    try:
        fields = dict(parse_qsl(raw.decode("ascii"), max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        fields = {}
    value = fields.get("score", "")
    if not (value.isdigit() and 1 <= int(value) <= 5):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=[{"loc": ["body", "score"], "type": "value_error",
                                     "msg": "score must be a whole number from 1 to 5"}])
    return await _rating_response(token, int(value), store=True)
