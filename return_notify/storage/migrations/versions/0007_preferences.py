"""preferences: customer preferences, quiet hours and throttles.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     primary_key=True)


def upgrade() -> None:
    op.create_table(
        "customer_preferences",
        _tenant(),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("preferences", JSONB(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
    )
    op.create_table(
        "quiet_hours_configs",
        _tenant(),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("config", JSONB(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
    )
    op.create_table(
        "throttle_configs",
        _tenant(),
        sa.Column("config", JSONB(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("throttle_configs")
    op.drop_table("quiet_hours_configs")
    op.drop_table("customer_preferences")
