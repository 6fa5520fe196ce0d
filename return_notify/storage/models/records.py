"""The system of record: tenants, returns, events (and rejected ones), deliveries, attempts,
and the sandbox provider's messages (migration ``0001``).

``events``, ``deliveries``, ``delivery_attempts`` and ``rejected_events`` are partitioned by
month (migration ``0010``, ``storage/partitions.py``): their ids carry the month, the
foreign keys between them and the unique ``(event_pk, channel)`` are per partition, and
``event_keys`` keeps ``(tenant, event_id)`` unique across months."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class Return(Base):
    __tablename__ = "returns"
    __table_args__ = (UniqueConstraint("tenant_id", "return_id", name="uq_returns_tenant_ref"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    return_id: Mapped[str] = mapped_column(String(64))
    milestone: Mapped[str | None] = mapped_column(String(32))
    milestone_rank: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    milestone_at: Mapped[datetime | None] = mapped_column(TS)
    customer_id: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str | None] = mapped_column(String(32))
    product_category: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class EventKey(Base):
    """One row per (tenant, event id) of the events kept: the idempotency check."""

    __tablename__ = "event_keys"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)

class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_return", "return_pk"),
        Index("ix_events_received", "received_at"),
        {"postgresql_partition_by": "RANGE (id)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[str] = mapped_column(String(128))
    return_pk: Mapped[int] = mapped_column(ForeignKey("returns.id"))
    milestone: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    disposition: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)

class RejectedEvent(Base):
    """An event that broke the contract, kept with the reason for an operator to see."""

    __tablename__ = "rejected_events"
    __table_args__ = (
        Index("ix_rejected_events_received", "received_at"),
        {"postgresql_partition_by": "RANGE (id)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    tenant: Mapped[str | None] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(256))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    payload: Mapped[Any] = mapped_column(JSONB)

class Delivery(Base):
    """One notification of one event on one channel, and where it stands."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_state_due", "state", "next_attempt_at"),
        Index("ix_deliveries_return", "return_pk"),
        Index("ix_deliveries_created", "created_at"),
        # a tenant's latest notifications: the insights of stats and GET /v1/stats (0014)
        Index("ix_deliveries_tenant_created", "tenant_id", "created_at"),
        Index("ix_deliveries_provider_msg", "provider", "provider_message_id"),
        {"postgresql_partition_by": "RANGE (id)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # to events.id in each partition (the same month's): storage/partitions.py
    event_pk: Mapped[int] = mapped_column(BigInteger)
    return_pk: Mapped[int] = mapped_column(ForeignKey("returns.id"))
    channel: Mapped[str] = mapped_column(String(16))
    milestone: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(16), server_default="informational")
    recipient: Mapped[str | None] = mapped_column(String(254))
    locale: Mapped[str | None] = mapped_column(String(35))
    # the template variant the winning rule named (NULL: default); migration 0009
    template: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    replays: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    lease_until: Mapped[datetime | None] = mapped_column(TS)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    delivered_at: Mapped[datetime | None] = mapped_column(TS)

class DeliveryAttempt(Base):
    """One try at the provider: the outcome, the error class and code, how long it took."""

    __tablename__ = "delivery_attempts"
    __table_args__ = ({"postgresql_partition_by": "RANGE (delivery_id)"},)

    # the primary key is (delivery_id, id): an attempt lives in its delivery's partition
    # (foreign key to deliveries.id, ON DELETE CASCADE, in each partition)
    delivery_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    attempt_no: Mapped[int] = mapped_column(SmallInteger)
    started_at: Mapped[datetime] = mapped_column(TS)
    duration_ms: Mapped[float] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))  # sent | transient | rate_limited | permanent
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)

class SandboxMessage(Base):
    """What the sandbox provider 'received': the exact content, one row per provider call."""

    __tablename__ = "sandbox_messages"
    __table_args__ = (Index("ix_sandbox_delivery", "delivery_id"),
                      Index("ix_sandbox_messages_received", "received_at"))  # retention (0013)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
