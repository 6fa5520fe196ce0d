"""api: tenant API keys, suppressions, in-app inbox items, webhook event dedupe.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenant_api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_tenant_api_keys_tenant", "tenant_api_keys", ["tenant_id"])

    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("sender", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "reason IN ('hard_bounce', 'spam_report', 'unsubscribe', 'stop', 'manual')",
            name="ck_suppressions_reason",
        ),
    )
    op.create_index(
        "uq_suppressions_key", "suppressions",
        [sa.text("coalesce(tenant_id, 0)"), "channel", "address", sa.text("coalesce(sender, '')")],
        unique=True,
    )
    op.create_index("ix_suppressions_lookup", "suppressions", ["channel", "address"])

    op.create_table(
        "inbox_items",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=True, unique=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("cta_url", sa.Text(), nullable=True),
        sa.Column("milestone", sa.String(32), nullable=True),
        sa.Column("return_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("read_at", TS, nullable=True),
    )
    op.create_index("ix_inbox_customer", "inbox_items", ["tenant_id", "customer_id", "id"])
    op.create_index("ix_inbox_unread", "inbox_items", ["tenant_id", "customer_id"],
                    postgresql_where=sa.text("read_at IS NULL"))

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_event_id", sa.String(128), nullable=False),
        sa.Column("received_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_webhook_events_provider_id"),
    )
    op.create_index("ix_webhook_events_received", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("inbox_items")
    op.drop_table("suppressions")
    op.drop_table("tenant_api_keys")
