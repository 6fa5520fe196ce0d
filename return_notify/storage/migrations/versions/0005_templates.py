"""templates: tenant branding and versioned template overrides.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenant_branding",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("logo_url", sa.String(2048), nullable=True),
        sa.Column("brand_color", sa.String(7), nullable=True),
        sa.Column("accent_color", sa.String(7), nullable=True),
        sa.Column("support_url", sa.String(2048), nullable=True),
        sa.Column("support_email", sa.String(254), nullable=True),
        sa.Column("sender_name", sa.String(100), nullable=True),
        sa.Column("tone", sa.String(16), server_default="friendly", nullable=False),
        sa.Column("default_locale", sa.String(35), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("revision", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.CheckConstraint("tone IN ('friendly', 'formal')", name="ck_tenant_branding_tone"),
    )
    op.create_table(
        "template_overrides",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("milestone", sa.String(32), nullable=False),
        sa.Column("part", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.UniqueConstraint("tenant_id", "channel", "milestone", "part", "locale", "version",
                            name="uq_template_overrides_version"),
        sa.CheckConstraint("channel IN ('email', 'sms', 'inapp')",
                           name="ck_template_overrides_channel"),
        sa.CheckConstraint("part IN ('subject', 'text', 'html', 'title')",
                           name="ck_template_overrides_part"),
        sa.CheckConstraint("version > 0", name="ck_template_overrides_version"),
    )
    op.create_index("uq_template_overrides_active", "template_overrides",
                    ["tenant_id", "channel", "milestone", "part", "locale"], unique=True,
                    postgresql_where=sa.text("active"))
    op.create_index("ix_template_overrides_tenant_active", "template_overrides", ["tenant_id"],
                    postgresql_where=sa.text("active"))


def downgrade() -> None:
    op.drop_table("template_overrides")
    op.drop_table("tenant_branding")
