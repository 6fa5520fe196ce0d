"""The insights' tables (migration ``0011``): a tenant's tracking and survey switches, the
engagement signals (email opens, link clicks) and customer satisfaction ratings.

``return_pk`` and ``delivery_id`` are plain bigints, not foreign keys: ``deliveries`` and
``events`` are partitioned tables. Nothing here is personal data.
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
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base

#: engagement signal kinds and where they come from
OPEN, CLICK = "open", "click"
SIGNAL_KINDS = (OPEN, CLICK)
#: the milestones whose notification may carry the rating links
SURVEY_MILESTONES = ("return_completed", "refund_processed")
#: where a satisfaction score came from: our rating links, the API, a producer's event
RATING_SOURCES = ("link", "api", "event")


class TenantInsights(Base):
    """A tenant's switches: engagement tracking (off by default) and the satisfaction survey
    (off by default) on which final milestones."""

    __tablename__ = "tenant_insights"
    __table_args__ = (
        CheckConstraint("cardinality(survey_milestones) >= 1 AND survey_milestones <@ "
                        "ARRAY['return_completed', 'refund_processed']::varchar[]",
                        name="ck_tenant_insights_survey_milestones"),
    )

    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    tracking: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: when tracking was last switched on (NULL while off)
    tracking_since: Mapped[datetime | None] = mapped_column(TS)
    survey: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    survey_milestones: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), server_default=text("'{return_completed}'"))
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(String(128))


class EngagementSignal(Base):
    """The first open or click of a return's milestone notification on one channel."""

    __tablename__ = "engagement_signals"
    __table_args__ = (
        UniqueConstraint("return_pk", "milestone", "channel", "kind",
                         name="uq_engagement_signals_once"),
        CheckConstraint("channel IN ('email', 'sms', 'inapp')",
                        name="ck_engagement_signals_channel"),
        CheckConstraint("kind IN ('open', 'click')", name="ck_engagement_signals_kind"),
        Index("ix_engagement_signals_tenant_at", "tenant_id", "at"),
        Index("ix_engagement_signals_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    return_pk: Mapped[int] = mapped_column(BigInteger)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16))
    milestone: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))  # sendgrid | redirect
    at: Mapped[datetime] = mapped_column(TS)
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class SatisfactionRating(Base):
    """A return's satisfaction score (1-5): one per return, changeable for a while."""

    __tablename__ = "satisfaction_ratings"
    __table_args__ = (
        UniqueConstraint("return_pk", name="uq_satisfaction_ratings_return"),
        CheckConstraint("score BETWEEN 1 AND 5", name="ck_satisfaction_ratings_score"),
        CheckConstraint("source IN ('link', 'api', 'event')",
                        name="ck_satisfaction_ratings_source"),
        Index("ix_satisfaction_ratings_tenant", "tenant_id", "rated_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    return_pk: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[int] = mapped_column(SmallInteger)
    source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    milestone: Mapped[str | None] = mapped_column(String(32))
    first_rated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    rated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    changes: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
