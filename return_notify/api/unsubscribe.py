"""One-click unsubscribe (RFC 8058): a confirmation page (GET) and the unsubscribe (POST).

``GET`` never changes anything (mail scanners follow links); ``POST`` is what mailbox
providers send for ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` and what the
page's button sends. Links come from ``return_notify.policy.suppression.unsubscribe_url``.
"""

from __future__ import annotations

import html
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from return_notify.api.limits import GuardedRoute
from return_notify.config.settings import get_settings
from return_notify.core.masking import mask
from return_notify.policy.suppression import (
    InvalidTokenError,
    UnsubscribeTarget,
    is_suppressed,
    read_unsubscribe_token,
    suppress,
)
from return_notify.storage.db import session_scope
from return_notify.storage.models import UNSUBSCRIBE
from return_notify.storage.tenants import find_tenant

log = logging.getLogger(__name__)
router = APIRouter(tags=["unsubscribe"], route_class=GuardedRoute)

TokenPath = Annotated[str, Path(min_length=8, max_length=2048,
                                description="Token from the List-Unsubscribe link")]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
color:#222}}button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;
background:#222;color:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, code: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=code)


def _target(token: str) -> UnsubscribeTarget | str:
    secret = get_settings().unsubscribe_secret
    if secret is None:
        return "Unsubscribe links are not configured on this server (RSN_UNSUBSCRIBE_SECRET)."
    try:
        return read_unsubscribe_token(token, secret.get_secret_value())
    except InvalidTokenError:
        return "This unsubscribe link is invalid or incomplete. Please copy the whole link."


def _tenant(slug: str) -> tuple[int, str] | None:
    with session_scope() as s:
        row = find_tenant(s, slug)
    return (row.id, row.display_name) if row else None


def _state(target: UnsubscribeTarget) -> tuple[int, str, str | None] | None:
    tenant = _tenant(target.tenant)
    if tenant is None:
        return None
    with session_scope() as s:
        reason = is_suppressed(s, tenant[0], target.channel, target.address)
    return tenant[0], tenant[1], reason


@router.get("/v1/unsubscribe/{token}", response_class=HTMLResponse,
            summary="Confirmation page with an Unsubscribe button (changes nothing)")
async def unsubscribe_page(token: TokenPath) -> HTMLResponse:
    target = _target(token)
    if isinstance(target, str):
        return _page("Link not valid", f"<p>{html.escape(target)}</p>", status.HTTP_400_BAD_REQUEST)
    state = await run_in_threadpool(_state, target)
    if state is None:
        return _page("Link not valid", "<p>This sender is no longer known.</p>",
                     status.HTTP_404_NOT_FOUND)
    _, brand, reason = state
    who = html.escape(mask(target.address))
    if reason:
        return _page("You are unsubscribed",
                     f"<p>{who} no longer receives return updates from {html.escape(brand)}.</p>")
    return _page("Unsubscribe", (
        f"<p>Stop return status emails from <strong>{html.escape(brand)}</strong> to {who}?</p>"
        f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f"<button type=\"submit\">Unsubscribe</button></form>"))


@router.post(
    "/v1/unsubscribe/{token}",
    summary="Unsubscribe (RFC 8058 one-click: body List-Unsubscribe=One-Click)",
    responses={200: {"description": "Unsubscribed (idempotent)",
                     "content": {"application/json": {"example": {
                         "unsubscribed": True, "address": "a***@example.com"}},
                                 "text/html": {}}},
               400: {"description": "Invalid token"}, 404: {"description": "Unknown tenant"}},
)
async def unsubscribe(request: Request, token: TokenPath) -> Response:
    """Suppresses the address for the tenant; safe to repeat. Needs no body or cookie."""
    target = _target(token)
    wants_html = "text/html" in request.headers.get("accept", "")
    if isinstance(target, str):
        return (_page("Link not valid", f"<p>{html.escape(target)}</p>", 400) if wants_html
                else JSONResponse({"detail": target}, status_code=status.HTTP_400_BAD_REQUEST))
    tenant = await run_in_threadpool(_tenant, target.tenant)
    if tenant is None:
        return JSONResponse({"detail": "unknown sender"}, status_code=status.HTTP_404_NOT_FOUND)

    def apply() -> bool:
        with session_scope() as s:
            return suppress(s, tenant[0], target.channel, target.address, UNSUBSCRIBE,
                            source="one-click")

    new = await run_in_threadpool(apply)
    log.info("unsubscribe: %s from %s on %s (%s)", mask(target.address), target.tenant,
             target.channel, "new" if new else "already")
    if wants_html:
        return _page("You are unsubscribed", f"<p>{html.escape(mask(target.address))} will no "
                     f"longer receive return updates from {html.escape(tenant[1])}.</p>")
    return JSONResponse({"unsubscribed": True, "address": mask(target.address)})
