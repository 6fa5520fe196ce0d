"""Default notification rules: which channels each milestone uses, and how urgent it is.

Per-tenant, per-region and per-category rules (stored in PostgreSQL) override these;
the defaults make a fresh installation notify sensibly for every milestone.
"""

from __future__ import annotations

from dataclasses import dataclass

from return_notify.events import Milestone

CHANNELS: tuple[str, ...] = ("email", "sms", "inapp")


@dataclass(frozen=True)
class Rule:
    channels: tuple[str, ...]
    urgency: str  # "transactional" goes ahead of "informational" in a backlog


_T, _I = "transactional", "informational"

DEFAULT_RULES: dict[Milestone, Rule] = {
    Milestone.RETURN_INITIATED: Rule(("email", "inapp"), _T),
    Milestone.RETURN_APPROVED: Rule(("email", "inapp"), _T),
    Milestone.LABEL_CREATED: Rule(("email", "sms", "inapp"), _T),
    Milestone.SHIPMENT_DISPATCHED: Rule(("email", "inapp"), _I),
    Milestone.IN_TRANSIT: Rule(("sms", "inapp"), _I),
    Milestone.WAREHOUSE_RECEIVED: Rule(("email", "inapp"), _I),
    Milestone.INSPECTION_COMPLETED: Rule(("email", "inapp"), _I),
    Milestone.RESTOCKED: Rule(("inapp",), _I),
    Milestone.REFUND_PROCESSED: Rule(("email", "sms", "inapp"), _T),
    Milestone.RETURN_COMPLETED: Rule(("email", "inapp"), _I),
    Milestone.RETURN_REJECTED: Rule(("email", "sms", "inapp"), _T),
    Milestone.RETURN_CANCELLED: Rule(("email", "inapp"), _T),
    Milestone.EXCEPTION: Rule(("email", "sms", "inapp"), _T),
}


def channels_for(
    milestone: Milestone, has_email: bool, has_phone: bool
) -> tuple[str, ...]:
    """Channels of the rule that a customer can actually be reached on."""
    rule = DEFAULT_RULES[milestone]
    reachable = {"email": has_email, "sms": has_phone, "inapp": True}
    return tuple(c for c in rule.channels if reachable[c])
