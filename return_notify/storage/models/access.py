"""Who may do what: tenant API keys (migration ``0002``), administrator principals, their
keys and the audit log (``0006``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from return_notify.storage.models.base import TS, Base

ROLES = ("owner", "admin", "regional_manager", "category_manager", "viewer")

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

class AdminPrincipal(Base):
    """A person or system allowed to administer one tenant, with a role and optional scopes."""

    __tablename__ = "principals"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_principals_tenant_name"),
        CheckConstraint("role IN ('owner', 'admin', 'regional_manager', 'category_manager', "
                        "'viewer')", name="ck_principals_role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(24))
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'"))
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(String(128))

class PrincipalApiKey(Base):
    """A principal's API key (``rsnp_<prefix>_<secret>``): only SHA-256 of the key is stored."""

    __tablename__ = "principal_api_keys"
    __table_args__ = (Index("ix_principal_api_keys_principal", "principal_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(TS)

class AuditEntry(Base):
    """One change made by a principal or an operator: who, what, before, after, when, scope."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant", "tenant_id", "id"),
        Index("ix_audit_log_resource", "tenant_id", "resource", "resource_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    principal_id: Mapped[int | None] = mapped_column(
        ForeignKey("principals.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(32))
    product_category: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
