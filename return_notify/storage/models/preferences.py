"""SQLAlchemy models of customer preferences, quiet-hours and throttle configuration.

They share ``Base`` with ``storage/models.py``; the schema is created by migration ``0007``.
The JSON documents are validated by ``preferences.Preferences``,
``quiet_hours.QuietHoursConfig`` and ``throttle.ThrottleConfig`` before they are stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base


class CustomerPreference(Base):
    """One customer's choices (channels, per-milestone channels, preferred channel, locale)."""

    __tablename__ = "customer_preferences"

    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class QuietHoursSetting(Base):
    """A tenant's quiet hours for one region; region ``*`` is the tenant-wide default."""

    __tablename__ = "quiet_hours_configs"

    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())

class ThrottleSetting(Base):
    """A tenant's minimum intervals and digest windows (over the ``RSN_*`` defaults)."""

    __tablename__ = "throttle_configs"

    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
