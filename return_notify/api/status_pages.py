"""The customer's status page of a return: ``/s/{token}``, the link every message carries
as "View status" (and as its call-to-action when the milestone has no link of its own).

The token is sealed like the ``/r/`` and ``/rate/`` ones (``templating.links``, kind
``status``): it names the tenant, the return and the message's language, so only someone
holding a message of that return reads its status, and return references cannot be
enumerated. The page shows the milestones the customer was told about (stale and repeated
events left out), with dates in the tenant's timezone; nothing personal.

``/r/{tenant}/{return_id}`` is the unsealed link of messages rendered without
``RSN_LINK_SECRET``: it answers with a page that names the retailer and where to find the
status, and never looks the return up (it would tell anyone whether a reference exists).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.responses import HTMLResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from return_notify.api.limits import GuardedRoute
from return_notify.api.links import PAGE_HEADERS, TokenPath, open_link
from return_notify.storage.db import session_scope
from return_notify.storage.tenants import find_tenant
from return_notify.templating.branding import get_branding
from return_notify.templating.i18n import canonical_locale, language_of
from return_notify.templating.links import STATUS, LinkTarget
from return_notify.templating.status_page import StatusPage, Step, status_page

router = APIRouter(tags=["links"], route_class=GuardedRoute)

#: milestones shown at most (a return with thousands of carrier scans shows its latest)
MAX_STEPS = 200
_RETURN = text("SELECT r.id, r.milestone, coalesce(t.name, t.slug) AS tenant_name "
               "FROM tenants t LEFT JOIN returns r ON r.tenant_id = t.id AND r.return_id = :r "
               "WHERE t.id = :t")
_STEPS = text("""
SELECT milestone, occurred_at FROM (
    SELECT milestone, occurred_at, id FROM events
    WHERE return_pk = :r AND disposition IN ('notified', 'no_channel')
    ORDER BY occurred_at DESC, id DESC LIMIT :n) e
ORDER BY occurred_at, id
""")


def steps_of(rows: list[tuple[str, object]]) -> tuple[Step, ...]:
    """One step per run of the same milestone (a run of carrier scans: its latest)."""
    out: list[Step] = []
    for milestone, at in rows:
        step = Step(str(milestone), at)  # type: ignore[arg-type]
        if out and out[-1].milestone == step.milestone:
            out[-1] = step
        else:
            out.append(step)
    return tuple(out)


def _status(target: LinkTarget) -> tuple[StatusPage, int]:
    with session_scope() as s:
        row = s.execute(_RETURN, {"t": target.tenant_id, "r": target.return_id}).first()
        if row is None:
            return StatusPage("invalid", target.language), status.HTTP_404_NOT_FOUND
        branding = get_branding(s, target.tenant_id)
        base = StatusPage("unknown", target.language,
                          branding.display_name or str(row.tenant_name), target.return_id,
                          brand_color=branding.brand_color, support_url=branding.support_url,
                          support_email=branding.support_email)
        if row.id is None:  # erased, or never known
            return base, status.HTTP_404_NOT_FOUND
        rows = s.execute(_STEPS, {"r": row.id, "n": MAX_STEPS}).tuples().all()
    return replace(base, state="status", current=row.milestone, steps=steps_of(list(rows)),
                   timezone=branding.timezone), status.HTTP_200_OK


def _page(page: StatusPage, code: int) -> HTMLResponse:
    return HTMLResponse(status_page(page), code, headers=PAGE_HEADERS)


@router.get(
    "/s/{token}", response_class=HTMLResponse,
    summary="A return's status page (the 'View status' link of every message)",
    responses={404: {"description": "Not a valid status link, or the return is gone"}},
)
async def status_of_return(token: TokenPath) -> HTMLResponse:
    target = open_link(token)
    if target is None or target.kind != STATUS:
        return _page(StatusPage("invalid"), status.HTTP_404_NOT_FOUND)
    return _page(*await run_in_threadpool(_status, target))


@router.get(
    "/r/{tenant}/{return_id:path}", response_class=HTMLResponse,
    summary="The unsealed status link of messages rendered without RSN_LINK_SECRET: where "
            "to find the status (shows none)",
    responses={404: {"description": "No such tenant"}},
)
async def unsealed_status_link(
    tenant: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")],
    return_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> HTMLResponse:
    def find() -> tuple[StatusPage, int]:
        with session_scope() as s:
            found = find_tenant(s, tenant)
            if found is None:
                return StatusPage("invalid"), status.HTTP_404_NOT_FOUND
            branding = get_branding(s, found.id)
            language = language_of(canonical_locale(branding.default_locale) or "en")
            return StatusPage(
                "legacy", language, branding.display_name or found.display_name,
                return_id, brand_color=branding.brand_color, support_url=branding.support_url,
                support_email=branding.support_email), status.HTTP_200_OK

    return _page(*await run_in_threadpool(find))
