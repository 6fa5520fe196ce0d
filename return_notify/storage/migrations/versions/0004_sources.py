"""sources: carrier tracking numbers, carrier webhook secrets, unmatched carrier events.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.Column:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "carrier_trackings",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        _tenant_fk(),
        sa.Column("return_pk", sa.BigInteger(), sa.ForeignKey("returns.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("tracking_number", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(64), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("tenant_id", "tracking_number", name="uq_carrier_trackings_number"),
    )
    op.create_index("ix_carrier_trackings_return", "carrier_trackings", ["return_pk"])

    op.create_table(
        "carrier_webhook_secrets",
        _tenant_fk(),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "provider", name="pk_carrier_webhook_secrets"),
    )

    op.create_table(
        "unmatched_carrier_events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        _tenant_fk(),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_key", sa.String(128), nullable=False),
        sa.Column("tracking_number", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(64), nullable=True),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("milestone", sa.String(32), nullable=True),
        sa.Column("occurred_at", TS, nullable=True),
        sa.Column("summary", JSONB(), nullable=False),
        sa.Column("seen", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("received_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("matched_at", TS, nullable=True),
        sa.Column("matched_event_id", sa.String(128), nullable=True),
        sa.UniqueConstraint("tenant_id", "provider", "provider_key",
                            name="uq_unmatched_carrier_events_key"),
    )
    op.create_index("ix_unmatched_carrier_events_open", "unmatched_carrier_events",
                    ["tenant_id", "tracking_number"],
                    postgresql_where=sa.text("matched_at IS NULL"))
    op.create_index("ix_unmatched_carrier_events_received", "unmatched_carrier_events",
                    ["received_at"])


def downgrade() -> None:
    op.drop_table("unmatched_carrier_events")
    op.drop_table("carrier_webhook_secrets")
    op.drop_table("carrier_trackings")
