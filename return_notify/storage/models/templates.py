"""SQLAlchemy models of tenant branding and versioned tenant template overrides (migration 0005;
scope and variant columns by 0009).

``tenant_branding.revision`` goes up on every change of a tenant's branding *or* overrides,
in the same transaction: workers compare it once per batch to know when their cached copy
is stale (``template_store``)."""

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
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base

TONES = ("friendly", "formal")

OVERRIDE_CHANNELS = ("email", "sms", "inapp")

OVERRIDE_PARTS = ("subject", "text", "html", "title")

ANY_MILESTONE = "*"

DEFAULT_VARIANT = "default"

#: the scope part of an override's key, NULL compared as ANY / the default variant
SCOPE_KEY = (text("coalesce(region, '')"), text("coalesce(product_category, '')"),
             text("coalesce(variant, '')"))

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
    """One version of a tenant's template for (channel, milestone, part, locale, region,
    product category, variant).

    ``milestone`` ``*`` applies to every milestone (a specific one wins). ``region`` and
    ``product_category`` NULL mean ANY, normalised like rules (``EU`` covers ``EU-DE``);
    ``variant`` NULL is the default template, otherwise the name a rule's ``template``
    picks. At most one version per key is ``active``; none active means the next candidate
    (see ``template_store``) or the packaged default is used. The unique indexes compare
    NULL as ANY through ``coalesce`` (like ``notification_rules``).
    """

    __tablename__ = "template_overrides"
    __table_args__ = (
        Index("uq_template_overrides_version", "tenant_id", "channel", "milestone", "part",
              "locale", *SCOPE_KEY, "version", unique=True),
        Index("uq_template_overrides_active", "tenant_id", "channel", "milestone", "part",
              "locale", *SCOPE_KEY, unique=True, postgresql_where=text("active")),
        Index("ix_template_overrides_tenant_active", "tenant_id",
              postgresql_where=text("active")),
        CheckConstraint("channel IN ('email', 'sms', 'inapp')", name="ck_template_overrides_channel"),
        CheckConstraint("part IN ('subject', 'text', 'html', 'title')",
                        name="ck_template_overrides_part"),
        CheckConstraint("version > 0", name="ck_template_overrides_version"),
        CheckConstraint("variant IS NULL OR variant <> 'default'",
                        name="ck_template_overrides_variant"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    milestone: Mapped[str] = mapped_column(String(32))
    part: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    region: Mapped[str | None] = mapped_column(String(32))
    product_category: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
