"""SQLAlchemy models of tenant branding and versioned tenant template overrides (migration 0005).

``tenant_branding.revision`` goes up on every change of a tenant's branding *or* overrides,
in the same transaction: workers compare it once per batch to know when their cached copy
is stale (``template_store``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
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

TONES = ("friendly", "formal")
OVERRIDE_CHANNELS = ("email", "sms", "inapp")
OVERRIDE_PARTS = ("subject", "text", "html", "title")
ANY_MILESTONE = "*"


class TenantBranding(Base):
    """How a tenant's messages look and sound; every column may be NULL (= the default)."""

    __tablename__ = "tenant_branding"
    __table_args__ = (
        CheckConstraint("tone IN ('friendly', 'formal')", name="ck_tenant_branding_tone"),
    )

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    logo_url: Mapped[str | None] = mapped_column(String(2048))
    brand_color: Mapped[str | None] = mapped_column(String(7))
    accent_color: Mapped[str | None] = mapped_column(String(7))
    support_url: Mapped[str | None] = mapped_column(String(2048))
    support_email: Mapped[str | None] = mapped_column(String(254))
    sender_name: Mapped[str | None] = mapped_column(String(100))
    tone: Mapped[str] = mapped_column(String(16), server_default="friendly")
    default_locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(String(128))


class TemplateOverride(Base):
    """One version of a tenant's template for (channel, milestone, part, locale).

    ``milestone`` ``*`` applies to every milestone (a specific one wins). At most one
    version per key is ``active``; none active means the packaged default is used.
    """

    __tablename__ = "template_overrides"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "milestone", "part", "locale", "version",
                         name="uq_template_overrides_version"),
        Index("uq_template_overrides_active", "tenant_id", "channel", "milestone", "part",
              "locale", unique=True, postgresql_where=text("active")),
        Index("ix_template_overrides_tenant_active", "tenant_id",
              postgresql_where=text("active")),
        CheckConstraint("channel IN ('email', 'sms', 'inapp')", name="ck_template_overrides_channel"),
        CheckConstraint("part IN ('subject', 'text', 'html', 'title')",
                        name="ck_template_overrides_part"),
        CheckConstraint("version > 0", name="ck_template_overrides_version"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    milestone: Mapped[str] = mapped_column(String(32))
    part: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
