"""Notification rules (migration ``0006``; ``override_opt_out`` by ``0008``).

``NULL`` in a rule's ``region`` or ``product_category`` means ANY (see
``return_notify.rules.resolver``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base


class NotificationRule(Base):
    """(tenant, region or ANY, category or ANY, milestone) → channels, template, urgency."""

    __tablename__ = "notification_rules"
    __table_args__ = (
        # one rule per scope: two rules can never tie (see rules.py)
        Index("uq_notification_rules_scope", "tenant_id", "milestone",
              text("coalesce(region, '')"), text("coalesce(product_category, '')"), unique=True),
        CheckConstraint("cardinality(channels) >= 1 AND channels <@ "
                        "ARRAY['email', 'sms', 'inapp']::varchar[]",
                        name="ck_notification_rules_channels"),
        CheckConstraint("urgency IS NULL OR urgency IN ('transactional', 'informational')",
                        name="ck_notification_rules_urgency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    region: Mapped[str | None] = mapped_column(String(32))
    product_category: Mapped[str | None] = mapped_column(String(64))
    milestone: Mapped[str] = mapped_column(String(32))
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    template: Mapped[str | None] = mapped_column(String(64))
    urgency: Mapped[str | None] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # a transactional rule may override a customer's channel opt-out (never STOP/unsubscribe);
    # column added by migration 0008
    override_opt_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(String(128))
    updated_by: Mapped[str | None] = mapped_column(String(128))
