"""Customer preferences, quiet hours and throttles over HTTP (tenant API key).

``/v1/customers/{customer_id}/preferences``  GET / PUT / DELETE
``/v1/quiet-hours`` GET (all regions, or ``?region=US-FL`` for what applies there)
``/v1/quiet-hours/{region}`` PUT / DELETE (``default`` = every region without its own)
``/v1/throttle`` GET / PUT / DELETE

Who may do what is decided in one place: ``Principal`` (the authentication dependency)
and ``authorize`` (the check): today any valid tenant key may act on its own tenant; the
RBAC dependency (scoped roles) replaces both there without touching the routes. Workers
see a change within ``RSN_PREFERENCES_CACHE_S`` / ``RSN_POLICY_CACHE_S`` seconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel

from return_notify.api.auth import Tenant, TenantAuth
from return_notify.planning import (
    delete_quiet_hours,
    effective_throttle,
    get_policy_settings,
    get_quiet_hours,
    get_throttle,
    load_policies,
    put_quiet_hours,
    put_throttle,
)
from return_notify.preferences import (
    Preferences,
    delete_preferences,
    get_preferences,
    put_preferences,
)
from return_notify.quiet_hours import LEGAL_WINDOWS, QuietHoursConfig, normalise_region, resolve
from return_notify.storage.db import session_scope
from return_notify.throttle import ThrottleConfig

router = APIRouter(tags=["preferences"])

#: who is calling; swap for the RBAC principal dependency (and adapt ``authorize``)
Principal = Tenant

Action = Literal["read", "write"]
CustomerId = Annotated[str, Path(min_length=1, max_length=128, description="The customer id "
                                 "events carry in customer.id")]
RegionPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9*_-]+$",
                                 description="e.g. US-FL, EU-DE, or 'default'")]
_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid API key"},
         403: {"description": "Not allowed for this principal"}}


def authorize(auth: TenantAuth, action: Action, *, region: str | None = None) -> int:
    """The one permission check of these routes; returns the tenant id to act on.

    Swap point for RBAC (``api/rbac.py``): a regional manager may only touch the regions
    of its scope (``region`` is given for quiet-hours routes, None = tenant-wide).
    """
    del action, region  # every valid tenant key may read and write its own tenant today
    return auth.tenant_id


def region_key(region: str) -> str:
    return "*" if region.lower() in ("default", "*") else normalise_region(region) or "*"


class PreferencesView(BaseModel):
    customer_id: str
    stored: bool
    preferences: Preferences


@router.get("/v1/customers/{customer_id}/preferences", response_model=PreferencesView,
            summary="A customer's stored preferences", responses=_AUTH)
def read_preferences(tenant: Principal, customer_id: CustomerId) -> dict[str, Any]:
    """``stored: false`` with empty preferences when the customer chose nothing (defaults
    from events and rules apply)."""
    tid = authorize(tenant, "read")
    with session_scope() as s:
        prefs = get_preferences(s, tid, customer_id)
    return {"customer_id": customer_id, "stored": prefs is not None,
            "preferences": prefs or Preferences()}


@router.put("/v1/customers/{customer_id}/preferences", response_model=PreferencesView,
            summary="Replace a customer's preferences", responses=_AUTH)
def write_preferences(tenant: Principal, customer_id: CustomerId, body: Preferences) -> dict[str, Any]:
    """The whole document is replaced; fields left out mean "no opinion". Example:
    ``{"channels": {"sms": false}, "milestones": {"refund_processed": {"sms": true}},
    "preferred_channel": "email", "locale": "de-AT", "timezone": "Europe/Vienna"}``."""
    tid = authorize(tenant, "write")
    with session_scope() as s:
        put_preferences(s, tid, customer_id, body)
    return {"customer_id": customer_id, "stored": True, "preferences": body}


@router.delete("/v1/customers/{customer_id}/preferences", status_code=204,
               summary="Forget a customer's preferences", responses=_AUTH)
def remove_preferences(tenant: Principal, customer_id: CustomerId) -> Response:
    tid = authorize(tenant, "write")
    with session_scope() as s:
        delete_preferences(s, tid, customer_id)
    return Response(status_code=204)


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


def effective_view(configs: dict[str, QuietHoursConfig], region: str | None) -> dict[str, Any]:
    settings = get_policy_settings()
    eff = resolve(configs, region, settings.default_quiet_hours())
    if eff is None or not settings.quiet_hours_enabled:
        return {"region": region, "source": "off", "enabled": False, "allowed": {},
                "channels": [], "exempt_milestones": []}
    return {"region": region, "source": eff.source, "enabled": True,
            "allowed": eff.window.describe(), "channels": sorted(eff.channels),
            "exempt_milestones": sorted(eff.exempt_milestones)}


@router.get("/v1/quiet-hours", response_model=QuietHoursView,
            summary="Quiet-hours configuration, and what applies in a region", responses=_AUTH)
def read_quiet_hours(
    tenant: Principal,
    region: Annotated[str | None, Query(max_length=32, description="e.g. US-FL")] = None,
) -> dict[str, Any]:
    tid = authorize(tenant, "read", region=region)
    with session_scope() as s:
        configs = get_quiet_hours(s, tid)
    return {"configs": configs, "default": get_policy_settings().default_quiet_hours(),
            "legal_windows": {k: w.describe() for k, w in LEGAL_WINDOWS.items()},
            "effective": effective_view(configs, region) if region else None}


@router.put("/v1/quiet-hours/{region}", response_model=EffectiveQuietHours,
            summary="Set the quiet hours of a region ('default': every other region)",
            responses=_AUTH)
def write_quiet_hours(tenant: Principal, region: RegionPath, body: QuietHoursConfig) -> dict[str, Any]:
    """Returns what now applies in that region (the legal floor of a US state is
    intersected unless ``enforce_legal`` is false)."""
    key = region_key(region)
    tid = authorize(tenant, "write", region=None if key == "*" else key)
    with session_scope() as s:
        put_quiet_hours(s, tid, key, body)
        configs = get_quiet_hours(s, tid)
    return effective_view(configs, None if key == "*" else key)


@router.delete("/v1/quiet-hours/{region}", status_code=204, responses=_AUTH,
               summary="Remove a region's quiet hours (the next broader one applies)")
def remove_quiet_hours(tenant: Principal, region: RegionPath) -> Response:
    key = region_key(region)
    tid = authorize(tenant, "write", region=None if key == "*" else key)
    with session_scope() as s:
        if not delete_quiet_hours(s, tid, key):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no quiet hours for {key!r}")
    return Response(status_code=204)


class ThrottleView(BaseModel):
    tenant: ThrottleConfig | None
    effective: ThrottleConfig


def throttle_view(tid: int) -> dict[str, Any]:
    with session_scope() as s:
        own = get_throttle(s, tid)
        policy = load_policies(s, [tid], ttl_s=0)[tid]
    return {"tenant": own, "effective": effective_throttle(policy, get_policy_settings())}


@router.get("/v1/throttle", response_model=ThrottleView, responses=_AUTH,
            summary="Minimum intervals and digest windows (the tenant's, and in effect)")
def read_throttle(tenant: Principal) -> dict[str, Any]:
    return throttle_view(authorize(tenant, "read"))


@router.put("/v1/throttle", response_model=ThrottleView, responses=_AUTH,
            summary="Set the tenant's minimum intervals and digest windows")
def write_throttle(tenant: Principal, body: ThrottleConfig) -> dict[str, Any]:
    """Entries override the defaults key by key; 0 switches one off. Durations in seconds
    or as "6h", "2m". Example: ``{"min_interval_s": {"in_transit:sms": "6h"},
    "digest_window_s": {"email": "2m"}}``."""
    tid = authorize(tenant, "write")
    with session_scope() as s:
        put_throttle(s, tid, body)
    return throttle_view(tid)


@router.delete("/v1/throttle", status_code=204, responses=_AUTH,
               summary="Remove the tenant's throttle overrides (defaults apply)")
def remove_throttle(tenant: Principal) -> Response:
    tid = authorize(tenant, "write")
    with session_scope() as s:
        put_throttle(s, tid, None)
    return Response(status_code=204)
