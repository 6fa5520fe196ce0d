"""``GET /v1/returns/{return_id}``: where a return stands and what the customer was told;
``POST /v1/returns/{return_id}/satisfaction``: the score of a retailer's own survey."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import text

from return_notify.api.auth import Tenant
from return_notify.api.limits import GuardedRoute
from return_notify.config.settings import get_settings
from return_notify.core.masking import mask
from return_notify.pipeline.satisfaction import current_rating, record_rating
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


class SatisfactionView(BaseModel):
    score: int = Field(description="1 (not at all satisfied) to 5 (very satisfied)")
    source: str = Field(description="link (our rating links), api or event (the retailer's)")
    first_rated_at: datetime
    rated_at: datetime
    changeable_until: datetime | None = Field(
        description="Until when the customer's rating link may still change it (null: final)")


class ReturnView(BaseModel):
    return_id: str
    milestone: str | None
    milestone_at: datetime | None
    customer_id: str | None
    region: str | None
    product_category: str | None
    timeline: list[TimelineEntry]
    deliveries: list[DeliveryView]
    satisfaction: SatisfactionView | None = None


class SatisfactionIn(BaseModel):
    """A score from the retailer's own survey (replaces any earlier score of the return)."""

    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, description="1 (not at all satisfied) to 5 (very satisfied)")
    rated_at: AwareDatetime | None = Field(
        default=None, description="When the customer answered (RFC 3339); default: now")


class SatisfactionResult(SatisfactionView):
    return_id: str
    outcome: Literal["recorded", "changed", "unchanged", "locked"]


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
        rating = current_rating(s, r["id"], get_settings().rating_change_window_h,
                                datetime.now(UTC))
    view = {k: v for k, v in r.items() if k != "id"}
    view["satisfaction"] = rating.as_dict() if rating is not None else None
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


@router.post(
    "/v1/returns/{return_id}/satisfaction",
    response_model=SatisfactionResult,
    summary="Record the customer's satisfaction score from your own survey (idempotent)",
    responses={401: {"description": "Missing or invalid API key"},
               404: {"description": "No such return for this tenant"},
               422: {"description": "Not a score from 1 to 5, or an unknown field"}},
)
def post_satisfaction(
    tenant: Tenant, body: SatisfactionIn,
    return_id: Annotated[str, Path(min_length=1, max_length=64,
                                   description="The return reference (RMA)")],
) -> dict[str, Any]:
    """One score per return: yours replaces any earlier one (also one the customer gave
    through a rating link); the same score again changes nothing (``unchanged``)."""
    now = datetime.now(UTC)
    at = min(body.rated_at, now) if body.rated_at is not None else now
    with session_scope() as s:
        rpk = s.execute(text("SELECT id FROM returns WHERE tenant_id = :t AND return_id = :r"),
                        {"t": tenant.tenant_id, "r": return_id}).scalar()
        if rpk is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                detail=f"no return {return_id!r} for tenant {tenant.slug!r}")
        result = record_rating(s, tenant.tenant_id, int(rpk), body.score, source="api", at=at,
                               window_h=get_settings().rating_change_window_h)
    return {"return_id": return_id, "outcome": result.outcome, **result.rating.as_dict()}
