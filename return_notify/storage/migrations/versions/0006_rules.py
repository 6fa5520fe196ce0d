"""rules: notification rules, principals and their API keys, the audit log.

Depends only on ``tenants`` (0001), not on anything 0002-0005 create.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("product_category", sa.String(64), nullable=True),
        sa.Column("milestone", sa.String(32), nullable=False),
        sa.Column("channels", ARRAY(sa.String(16)), nullable=False),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("urgency", sa.String(16), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.CheckConstraint("cardinality(channels) >= 1 AND channels <@ "
                           "ARRAY['email', 'sms', 'inapp']::varchar[]",
                           name="ck_notification_rules_channels"),
        sa.CheckConstraint("urgency IS NULL OR urgency IN ('transactional', 'informational')",
                           name="ck_notification_rules_urgency"),
    )
    op.create_index(
        "uq_notification_rules_scope", "notification_rules",
        ["tenant_id", "milestone", sa.text("coalesce(region, '')"),
         sa.text("coalesce(product_category, '')")],
        unique=True,
    )

    op.create_table(
        "principals",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant_fk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(24), nullable=False),
        sa.Column("regions", ARRAY(sa.String(32)), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("categories", ARRAY(sa.String(64)), server_default=sa.text("'{}'"),
                  nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("tenant_id", "name", name="uq_principals_tenant_name"),
        sa.CheckConstraint("role IN ('owner', 'admin', 'regional_manager', 'category_manager', "
                           "'viewer')", name="ck_principals_role"),
    )

    op.create_table(
        "principal_api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("principal_id", sa.Integer(),
                  sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_principal_api_keys_principal", "principal_api_keys", ["principal_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        _tenant_fk(),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("principal_id", sa.Integer(),
                  sa.ForeignKey("principals.id", ondelete="SET NULL"), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=True),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("product_category", sa.String(64), nullable=True),
        sa.Column("before", JSONB(), nullable=True),
        sa.Column("after", JSONB(), nullable=True),
    )
    op.create_index("ix_audit_log_tenant", "audit_log", ["tenant_id", "id"])
    op.create_index("ix_audit_log_resource", "audit_log", ["tenant_id", "resource", "resource_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("principal_api_keys")
    op.drop_table("principals")
    op.drop_table("notification_rules")
