"""The suppression list, the provider webhook dedupe table (migration ``0002``) and the
verified test recipients (``0012``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base

# Suppression reasons.
HARD_BOUNCE, SPAM_REPORT, UNSUBSCRIBE, STOP, MANUAL = (
    "hard_bounce", "spam_report", "unsubscribe", "stop", "manual",
)

SUPPRESSION_REASONS = (HARD_BOUNCE, SPAM_REPORT, UNSUBSCRIBE, STOP, MANUAL)

class Suppression(Base):
    """An address that must not be sent to on a channel.

    ``tenant_id`` NULL means every tenant (an SMS STOP on a shared sender number blocks that
    number for everyone at the carrier); ``sender`` NULL means every sender.
    """

    __tablename__ = "suppressions"
    __table_args__ = (
        Index(
            "uq_suppressions_key",
            text("coalesce(tenant_id, 0)"), "channel", "address", text("coalesce(sender, '')"),
            unique=True,
        ),
        Index("ix_suppressions_lookup", "channel", "address"),
        CheckConstraint(
            "reason IN ('hard_bounce', 'spam_report', 'unsubscribe', 'stop', 'manual')",
            name="ck_suppressions_reason",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(254))
    sender: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class WebhookEvent(Base):
    """A provider event already processed (SendGrid ``sg_event_id``): duplicates are skipped."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_webhook_events_provider_id"),
        Index("ix_webhook_events_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class VerifiedTestRecipient(Base):
    """An address a tenant may send template test messages to, once it proved to own it
    (a code sent to it, entered back; migration ``0012``). ``verified_at`` NULL: pending."""

    __tablename__ = "test_recipients"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "address", name="uq_test_recipients_address"),
        CheckConstraint("channel IN ('email', 'sms')", name="ck_test_recipients_channel"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str | None] = mapped_column(String(128))
    code_expires_at: Mapped[datetime | None] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    verified_at: Mapped[datetime | None] = mapped_column(TS)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
