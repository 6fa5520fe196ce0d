"""What an administrator sees of a tenant's quiet hours and throttle: the stored
configuration and the one in effect (tenant defaults from settings), as plain dicts for the
HTTP API and the command line alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from return_notify.config.settings import Settings
from return_notify.policy.planner import (
    default_quiet_hours,
    effective_throttle,
    load_policies,
)
from return_notify.policy.quiet_hours import QuietHoursConfig, resolve
from return_notify.policy.store import get_throttle

__all__ = ["effective_view", "throttle_view"]


def effective_view(configs: dict[str, QuietHoursConfig], region: str | None,
                   settings: Settings) -> dict[str, Any]:
    """The quiet hours that apply to a recipient in ``region``, and where they come from."""
    eff = resolve(configs, region, default_quiet_hours(settings))
    if eff is None or not settings.quiet_hours_enabled:
        return {"region": region, "source": "off", "enabled": False, "allowed": {},
                "channels": [], "exempt_milestones": []}
    return {"region": region, "source": eff.source, "enabled": True,
            "allowed": eff.window.describe(), "channels": sorted(eff.channels),
            "exempt_milestones": sorted(eff.exempt_milestones)}


def throttle_view(session: Session, tenant_id: int, settings: Settings) -> dict[str, Any]:
    """The tenant's own throttle configuration (None: none stored) and the one in effect."""
    own = get_throttle(session, tenant_id)
    policy = load_policies(session, [tenant_id], ttl_s=0)[tenant_id]
    return {"tenant": own, "effective": effective_throttle(policy, settings)}
