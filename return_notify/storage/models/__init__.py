"""Every table of the schema, importable from here (``from return_notify.storage.models import
Delivery``); one module per table group. Alembic's ``env.py`` imports this package, so
every table is known to autogenerate."""

from __future__ import annotations

from return_notify.storage.models.access import (
    ROLES,
    AdminPrincipal,
    AuditEntry,
    PrincipalApiKey,
    TenantApiKey,
)
from return_notify.storage.models.base import (
    ALL_STATES,
    CLAIMABLE,
    DEAD,
    DELIVERED,
    FAILED,
    PENDING,
    RETRYING,
    SCHEDULED,
    SENDING,
    SENT,
    SKIPPED,
    SUPPRESSED,
    TERMINAL_STATES,
    TS,
    WAITING,
    Base,
)
from return_notify.storage.models.inbox import (
    InboxItem,
)
from return_notify.storage.models.preferences import (
    CustomerPreference,
    QuietHoursSetting,
    ThrottleSetting,
)
from return_notify.storage.models.records import (
    Delivery,
    DeliveryAttempt,
    Event,
    EventKey,
    RejectedEvent,
    Return,
    SandboxMessage,
    Tenant,
)
from return_notify.storage.models.rules import (
    NotificationRule,
)
from return_notify.storage.models.sources import (
    CarrierTracking,
    CarrierWebhookSecret,
    UnmatchedCarrierEvent,
)
from return_notify.storage.models.suppression import (
    HARD_BOUNCE,
    MANUAL,
    SPAM_REPORT,
    STOP,
    SUPPRESSION_REASONS,
    UNSUBSCRIBE,
    Suppression,
    WebhookEvent,
)
from return_notify.storage.models.templates import (
    ANY_MILESTONE,
    DEFAULT_VARIANT,
    OVERRIDE_CHANNELS,
    OVERRIDE_PARTS,
    SCOPE_KEY,
    TONES,
    TemplateOverride,
    TenantBranding,
)

__all__ = [
    "ALL_STATES",
    "ANY_MILESTONE",
    "AdminPrincipal",
    "AuditEntry",
    "Base",
    "CLAIMABLE",
    "CarrierTracking",
    "CarrierWebhookSecret",
    "CustomerPreference",
    "DEAD",
    "DEFAULT_VARIANT",
    "DELIVERED",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "EventKey",
    "FAILED",
    "HARD_BOUNCE",
    "InboxItem",
    "MANUAL",
    "NotificationRule",
    "OVERRIDE_CHANNELS",
    "OVERRIDE_PARTS",
    "PENDING",
    "PrincipalApiKey",
    "QuietHoursSetting",
    "RETRYING",
    "ROLES",
    "RejectedEvent",
    "Return",
    "SCHEDULED",
    "SCOPE_KEY",
    "SENDING",
    "SENT",
    "SKIPPED",
    "SPAM_REPORT",
    "STOP",
    "SUPPRESSED",
    "SUPPRESSION_REASONS",
    "SandboxMessage",
    "Suppression",
    "TERMINAL_STATES",
    "TONES",
    "TS",
    "TemplateOverride",
    "Tenant",
    "TenantApiKey",
    "TenantBranding",
    "ThrottleSetting",
    "UNSUBSCRIBE",
    "UnmatchedCarrierEvent",
    "WAITING",
    "WebhookEvent",
]
