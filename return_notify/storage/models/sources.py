"""SQLAlchemy models of the ways in: carrier tracking numbers, webhook secrets, unmatched events.

They share ``Base`` with ``storage/models.py``; the schema is created by migration ``0004``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base


class CarrierTracking(Base):
    """A return's parcel: tracking number → return, filled from our own label events.

    Carriers recycle tracking numbers, so a number is unique per tenant and the newest
    label wins (``remember_tracking`` moves it to the newer return).
    """

    __tablename__ = "carrier_trackings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "tracking_number", name="uq_carrier_trackings_number"),
        Index("ix_carrier_trackings_return", "return_pk"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    return_pk: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    tracking_number: Mapped[str] = mapped_column(String(64))
    carrier: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class CarrierWebhookSecret(Base):
    """A tenant's shared secret for one tracking provider's webhooks.

    Kept in clear because verifying an HMAC needs the key itself (as every webhook receiver
    does); it is never logged or returned by the API.
    """

    __tablename__ = "carrier_webhook_secrets"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "provider", name="pk_carrier_webhook_secrets"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class UnmatchedCarrierEvent(Base):
    """A signed carrier update whose tracking number no return of the tenant has (yet).

    One row per provider event (retries bump ``seen``); ``summary`` is the normalised update,
    enough for ``return-notify carriers rematch`` to publish it once the number is known.
    """

    __tablename__ = "unmatched_carrier_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "provider_key",
                         name="uq_unmatched_carrier_events_key"),
        Index("ix_unmatched_carrier_events_open", "tenant_id", "tracking_number",
              postgresql_where=text("matched_at IS NULL")),
        Index("ix_unmatched_carrier_events_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    provider_key: Mapped[str] = mapped_column(String(128))
    tracking_number: Mapped[str] = mapped_column(String(64))
    carrier: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(64))
    milestone: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime | None] = mapped_column(TS)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)
    seen: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    matched_at: Mapped[datetime | None] = mapped_column(TS)
    matched_event_id: Mapped[str | None] = mapped_column(String(128))
