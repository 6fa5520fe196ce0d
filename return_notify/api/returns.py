"""``GET /v1/returns/{return_id}``: where a return stands and what the customer was told."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel
from sqlalchemy import text

from return_notify.api.auth import Tenant
from return_notify.api.limits import GuardedRoute
from return_notify.core.masking import mask
from return_notify.storage.db import session_scope

router = APIRouter(tags=["returns"], route_class=GuardedRoute)


class TimelineEntry(BaseModel):
    event_id: str
    milestone: str
    occurred_at: datetime
    received_at: datetime
    disposition: str
    reason: str | None = None
    source: str | None = None


class DeliveryView(BaseModel):
    id: int
    channel: str
    milestone: str
    state: str
    recipient: str  # masked
    subject: str | None = None
    body: str | None = None
    skip_reason: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None


class ReturnView(BaseModel):
    return_id: str
    milestone: str | None
    milestone_at: datetime | None
    customer_id: str | None
    region: str | None
    product_category: str | None
    timeline: list[TimelineEntry]
    deliveries: list[DeliveryView]


def return_view(tenant_id: int, return_id: str) -> dict[str, Any] | None:
    with session_scope() as s:
        r = s.execute(text(
            "SELECT id, return_id, milestone, milestone_at, customer_id, region, product_category "
            "FROM returns WHERE tenant_id = :tid AND return_id = :rid"
        ), {"tid": tenant_id, "rid": return_id}).mappings().first()
        if r is None:
            return None
        timeline = s.execute(text(
            "SELECT event_id, milestone, occurred_at, received_at, disposition, reason, source "
            "FROM events WHERE return_pk = :pk ORDER BY occurred_at, id"
        ), {"pk": r["id"]}).mappings().all()
        deliveries = s.execute(text(
            "SELECT id, channel, milestone, state, recipient, subject, body, skip_reason, "
            "created_at, sent_at, delivered_at FROM deliveries WHERE return_pk = :pk "
            "ORDER BY occurred_at, id"
        ), {"pk": r["id"]}).mappings().all()
    view = {k: v for k, v in r.items() if k != "id"}
    view["timeline"] = [dict(t) for t in timeline]
    view["deliveries"] = [{**d, "recipient": mask(d["recipient"])} for d in deliveries]
    return view


@router.get(
    "/v1/returns/{return_id}",
    response_model=ReturnView,
    summary="A return's current milestone, its event timeline and every notification",
    responses={401: {"description": "Missing or invalid API key"},
               404: {"description": "No such return for this tenant"}},
)
def get_return(
    tenant: Tenant,
    return_id: str = Path(min_length=1, max_length=64, description="The return reference (RMA)"),
) -> dict[str, Any]:
    """Recipients are masked; ``subject``/``body`` are exactly what was sent, and when."""
    view = return_view(tenant.tenant_id, return_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"no return {return_id!r} for tenant {tenant.slug!r}")
    return view
