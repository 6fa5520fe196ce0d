"""SQLAlchemy models of the HTTP side: API keys, suppressions, the in-app inbox, webhook dedupe.

They share ``Base`` with ``storage/models.py``; the schema is created by migration ``0002``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models import TS, Base

# Suppression reasons.
HARD_BOUNCE, SPAM_REPORT, UNSUBSCRIBE, STOP, MANUAL = (
    "hard_bounce", "spam_report", "unsubscribe", "stop", "manual",
)
SUPPRESSION_REASONS = (HARD_BOUNCE, SPAM_REPORT, UNSUBSCRIBE, STOP, MANUAL)


class TenantApiKey(Base):
    """A tenant's API key: only a SHA-256 of the secret part is stored, never the key."""

    __tablename__ = "tenant_api_keys"
    __table_args__ = (Index("ix_tenant_api_keys_tenant", "tenant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


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


class InboxItem(Base):
    """One in-app notification in a customer's inbox (the in-app provider's own store)."""

    __tablename__ = "inbox_items"
    __table_args__ = (
        Index("ix_inbox_customer", "tenant_id", "customer_id", "id"),
        Index("ix_inbox_unread", "tenant_id", "customer_id",
              postgresql_where=text("read_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(128))
    delivery_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    cta_url: Mapped[str | None] = mapped_column(Text)
    milestone: Mapped[str | None] = mapped_column(String(32))
    return_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column(TS)


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
