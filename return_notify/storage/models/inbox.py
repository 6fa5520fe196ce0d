"""The in-app inbox: one row per in-app notification (migration ``0002``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base


class InboxItem(Base):
    """One in-app notification in a customer's inbox (the in-app provider's own store)."""

    __tablename__ = "inbox_items"
    __table_args__ = (
        Index("ix_inbox_customer", "tenant_id", "customer_id", "id"),
        Index("ix_inbox_items_created", "created_at"),  # housekeeping (0013)
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
