"""Changing a tenant's quiet hours and throttle configuration, each change audited.

The admin API (``api/preferences.py``) and the CLI (``cli_prefs.py``) both change these
through here, so every change writes an audit entry in the same transaction (see
``audit.record``). Permission resources and scopes, as ``principals.authorize`` sees them:

* ``quiet_hours`` of region R: scope (R, ANY); the tenant default (``*``): tenant-wide;
* ``throttle``: tenant-wide (one config per tenant).

Permission checks are the caller's; this module only stores and audits. A change that
changes nothing writes no entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.core.regions import normalize_region
from return_notify.policy.planner import (
    delete_quiet_hours,
    get_quiet_hours,
    get_throttle,
    put_quiet_hours,
    put_throttle,
)
from return_notify.policy.quiet_hours import QuietHoursConfig
from return_notify.policy.throttle import ThrottleConfig

QUIET_HOURS, THROTTLE = "quiet_hours", "throttle"
TENANT_DEFAULT = "*"


def region_key(region: str) -> str:
    """A quiet-hours region as stored: ``default``/``*``/``any`` → ``*`` (tenant default),
    else the region upper case (``us_tx`` → ``US-TX``); ``ValueError`` if malformed."""
    value = region.strip()
    if value.lower() in ("default", "*", "any", ""):
        return TENANT_DEFAULT
    normalized = normalize_region(value.replace("_", "-"))
    return normalized or TENANT_DEFAULT


def scope_region(key: str) -> str | None:
    """The permission scope's region of a quiet-hours key (None: tenant-wide)."""
    return None if key == TENANT_DEFAULT else key


def _dump(cfg: QuietHoursConfig | ThrottleConfig | None) -> dict[str, Any] | None:
    return None if cfg is None else cfg.model_dump(mode="json")


def set_quiet_hours(session: Session, tenant_id: int, key: str, cfg: QuietHoursConfig,
                    actor: Actor) -> bool:
    """Replace the quiet hours of region ``key`` (``*``: tenant default); True if changed."""
    before = _dump(get_quiet_hours(session, tenant_id).get(key))
    after = _dump(cfg)
    if before == after:
        return False
    put_quiet_hours(session, tenant_id, key, cfg)
    record(session, tenant_id, actor, "quiet_hours.create" if before is None
           else "quiet_hours.update", QUIET_HOURS, key, region=scope_region(key),
           before=before, after=after)
    return True


def remove_quiet_hours(session: Session, tenant_id: int, key: str, actor: Actor) -> bool:
    """Remove region ``key``'s quiet hours (the next broader ones apply); False if none."""
    before = _dump(get_quiet_hours(session, tenant_id).get(key))
    if not delete_quiet_hours(session, tenant_id, key):
        return False
    record(session, tenant_id, actor, "quiet_hours.delete", QUIET_HOURS, key,
           region=scope_region(key), before=before)
    return True


def set_throttle(session: Session, tenant_id: int, cfg: ThrottleConfig | None,
                 actor: Actor) -> bool:
    """Replace (None: remove) the tenant's throttle and digest overrides; True if changed."""
    before, after = _dump(get_throttle(session, tenant_id)), _dump(cfg)
    if before == after:
        return False
    put_throttle(session, tenant_id, cfg)
    action = "throttle.delete" if cfg is None else (
        "throttle.create" if before is None else "throttle.update")
    record(session, tenant_id, actor, action, THROTTLE, "tenant", before=before, after=after)
    return True
