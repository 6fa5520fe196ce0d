"""Customer preferences (tenant API key), quiet hours and throttles (principal keys, RBAC).

``/v1/customers/{customer_id}/preferences``  GET / PUT / DELETE: customer data written by
the retailer's backend, with the tenant ingest key (``rsn_…``), like ``POST /v1/events``.

Tenant configuration, with a principal key (``rsnp_…``) and scoped roles, like the rules
admin API (``api/rbac.py``; the check is ``principals.authorize``); a tenant ingest key
gets 401 here:

``/v1/quiet-hours`` GET: the configs the principal may read (``?region=US-FL``: what
applies there, which needs read on that region)
``/v1/quiet-hours/{region}`` GET / PUT / DELETE (``default`` = every region without its
own). Scope of region R: (R, ANY), so a regional manager for EU reads and changes EU and
EU-DE, never US (403); the tenant default is tenant-wide: every principal reads it, only
owners and admins change it.
``/v1/throttle`` GET / PUT / DELETE: tenant-wide (read: every principal; write: owners and
admins).

Every change is audited (``policy_store``; ``GET /v1/admin/audit?resource=quiet_hours``).
Workers see a change within ``RSN_PREFERENCES_CACHE_S`` / ``RSN_POLICY_CACHE_S`` seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from pydantic import BaseModel

from return_notify.api.auth import Tenant
from return_notify.api.limits import GuardedRoute
from return_notify.api.rbac import Principal, Scope, authorize, require
from return_notify.config.settings import get_settings
from return_notify.policy.planner import (
    default_quiet_hours,
    get_quiet_hours,
)
from return_notify.policy.preferences import (
    Preferences,
    delete_preferences,
    get_preferences,
    put_preferences,
)
from return_notify.policy.quiet_hours import LEGAL_WINDOWS, QuietHoursConfig
from return_notify.policy.store import (
    region_key,
    remove_quiet_hours,
    scope_region,
    set_quiet_hours,
    set_throttle,
)
from return_notify.policy.throttle import ThrottleConfig
from return_notify.policy.views import effective_view, throttle_view
from return_notify.storage.db import session_scope

__all__ = ["effective_view", "region_key", "router", "throttle_view"]

router = APIRouter(tags=["preferences"], route_class=GuardedRoute)

CustomerId = Annotated[str, Path(min_length=1, max_length=128, description="The customer id "
                                 "events carry in customer.id")]
RegionPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9*_-]+$",
                                 description="e.g. US-FL, EU-DE, or 'default'")]
_TENANT_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid tenant API key"}}
_ADMIN_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid or revoked principal key (tenant keys: 401)"},
    403: {"description": "The principal's role or scope does not allow it (the reason)"}}


# ------------------------------------------------------------ customer preferences -------

class PreferencesView(BaseModel):
    customer_id: str
    stored: bool
    preferences: Preferences


@router.get("/v1/customers/{customer_id}/preferences", response_model=PreferencesView,
            summary="A customer's stored preferences", responses=_TENANT_AUTH)
def read_preferences(tenant: Tenant, customer_id: CustomerId) -> dict[str, Any]:
    """``stored: false`` with empty preferences when the customer chose nothing (defaults
    from events and rules apply)."""
    with session_scope() as s:
        prefs = get_preferences(s, tenant.tenant_id, customer_id)
    return {"customer_id": customer_id, "stored": prefs is not None,
            "preferences": prefs or Preferences()}


@router.put("/v1/customers/{customer_id}/preferences", response_model=PreferencesView,
            summary="Replace a customer's preferences", responses=_TENANT_AUTH)
def write_preferences(tenant: Tenant, customer_id: CustomerId, body: Preferences) -> dict[str, Any]:
    """The whole document is replaced; fields left out mean "no opinion". Example:
    ``{"channels": {"sms": false}, "milestones": {"refund_processed": {"sms": true}},
    "preferred_channel": "email", "locale": "de-AT", "timezone": "Europe/Vienna"}``."""
    with session_scope() as s:
        put_preferences(s, tenant.tenant_id, customer_id, body)
    return {"customer_id": customer_id, "stored": True, "preferences": body}


@router.delete("/v1/customers/{customer_id}/preferences", status_code=204,
               summary="Forget a customer's preferences", responses=_TENANT_AUTH)
def remove_preferences(tenant: Tenant, customer_id: CustomerId) -> Response:
    with session_scope() as s:
        delete_preferences(s, tenant.tenant_id, customer_id)
    return Response(status_code=204)


# ------------------------------------------------------------ quiet hours ----------------

def _region_or_422(region: str) -> str:
    try:
        return region_key(region)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None


def quiet_hours_scope(region: RegionPath) -> Scope:
    """Scope of ``/v1/quiet-hours/{region}``: (region, ANY); ``default``: tenant-wide."""
    return Scope(scope_region(_region_or_422(region)), None)


def quiet_hours_query_scope(
    region: Annotated[str | None, Query(max_length=32, description="e.g. US-FL")] = None,
) -> Scope:
    """Scope of ``GET /v1/quiet-hours``: the ``?region=`` asked about, else tenant-wide."""
    return Scope(None if region is None else scope_region(_region_or_422(region)), None)


def tenant_wide() -> Scope:
    """Scope of tenant-wide configuration (the throttle): region and category ANY."""
    return Scope(None, None)


class EffectiveQuietHours(BaseModel):
    region: str | None
    source: str
    enabled: bool
    allowed: dict[str, str | None]
    channels: list[str]
    exempt_milestones: list[str]


class QuietHoursView(BaseModel):
    configs: dict[str, QuietHoursConfig]
    default: QuietHoursConfig
    legal_windows: dict[str, dict[str, str | None]]
    effective: EffectiveQuietHours | None = None


class QuietHoursRegionView(BaseModel):
    region: str
    stored: bool
    config: QuietHoursConfig | None
    effective: EffectiveQuietHours


@router.get("/v1/quiet-hours", response_model=QuietHoursView, responses=_ADMIN_AUTH,
            summary="Quiet-hours configs the principal may read, and what applies in a region")
def read_quiet_hours(
    principal: Annotated[Principal, Depends(require("quiet_hours:read",
                                                    quiet_hours_query_scope))],
    scope: Annotated[Scope, Depends(quiet_hours_query_scope)],
) -> dict[str, Any]:
    """``configs`` holds the tenant default (``*``) and the regions in the principal's scope;
    ``?region=`` (which needs read on that region) adds what applies there."""
    with session_scope() as s:
        configs = get_quiet_hours(s, principal.tenant_id)
    visible = {k: v for k, v in configs.items()
               if authorize(principal, "quiet_hours:read", scope_region(k), None)}
    return {"configs": visible, "default": default_quiet_hours(get_settings()),
            "legal_windows": {k: w.describe() for k, w in LEGAL_WINDOWS.items()},
            "effective": (effective_view(configs, scope.region, get_settings())
                          if scope.region else None)}


@router.get("/v1/quiet-hours/{region}", response_model=QuietHoursRegionView,
            responses=_ADMIN_AUTH,
            summary="A region's own quiet hours ('default': the tenant's) and what applies")
def read_region_quiet_hours(
    region: RegionPath,
    principal: Annotated[Principal, Depends(require("quiet_hours:read", quiet_hours_scope))],
) -> dict[str, Any]:
    key = region_key(region)
    with session_scope() as s:
        configs = get_quiet_hours(s, principal.tenant_id)
    return {"region": key, "stored": key in configs, "config": configs.get(key),
            "effective": effective_view(configs, scope_region(key), get_settings())}


@router.put("/v1/quiet-hours/{region}", response_model=EffectiveQuietHours,
            summary="Set the quiet hours of a region ('default': every other region)",
            responses=_ADMIN_AUTH)
def write_quiet_hours(
    region: RegionPath, body: QuietHoursConfig,
    principal: Annotated[Principal, Depends(require("quiet_hours:write", quiet_hours_scope))],
) -> dict[str, Any]:
    """Returns what now applies in that region (the legal floor of a US state is
    intersected unless ``enforce_legal`` is false). Audited."""
    key = region_key(region)
    with session_scope() as s:
        set_quiet_hours(s, principal.tenant_id, key, body, principal.actor)
        configs = get_quiet_hours(s, principal.tenant_id)
    return effective_view(configs, scope_region(key), get_settings())


@router.delete("/v1/quiet-hours/{region}", status_code=204, responses=_ADMIN_AUTH,
               summary="Remove a region's quiet hours (the next broader one applies)")
def delete_region_quiet_hours(
    region: RegionPath,
    principal: Annotated[Principal, Depends(require("quiet_hours:write", quiet_hours_scope))],
) -> Response:
    key = region_key(region)
    with session_scope() as s:
        if not remove_quiet_hours(s, principal.tenant_id, key, principal.actor):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no quiet hours for {key!r}")
    return Response(status_code=204)


# ------------------------------------------------------------ throttle -------------------

class ThrottleView(BaseModel):
    tenant: ThrottleConfig | None
    effective: ThrottleConfig


def _throttle_view(tid: int) -> dict[str, Any]:
    with session_scope() as s:
        return throttle_view(s, tid, get_settings())


@router.get("/v1/throttle", response_model=ThrottleView, responses=_ADMIN_AUTH,
            summary="Minimum intervals and digest windows (the tenant's, and in effect)")
def read_throttle(
    principal: Annotated[Principal, Depends(require("throttle:read", tenant_wide))],
) -> dict[str, Any]:
    return _throttle_view(principal.tenant_id)


@router.put("/v1/throttle", response_model=ThrottleView, responses=_ADMIN_AUTH,
            summary="Set the tenant's minimum intervals and digest windows (owner, admin)")
def write_throttle(
    body: ThrottleConfig,
    principal: Annotated[Principal, Depends(require("throttle:write", tenant_wide))],
) -> dict[str, Any]:
    """Entries override the defaults key by key; 0 switches one off. Durations in seconds
    or as "6h", "2m". Example: ``{"min_interval_s": {"in_transit:sms": "6h"},
    "digest_window_s": {"email": "2m"}}``. Audited."""
    with session_scope() as s:
        set_throttle(s, principal.tenant_id, body, principal.actor)
    return _throttle_view(principal.tenant_id)


@router.delete("/v1/throttle", status_code=204, responses=_ADMIN_AUTH,
               summary="Remove the tenant's throttle overrides (defaults apply; owner, admin)")
def remove_throttle(
    principal: Annotated[Principal, Depends(require("throttle:write", tenant_wide))],
) -> Response:
    with session_scope() as s:
        set_throttle(s, principal.tenant_id, None, principal.actor)
    return Response(status_code=204)
