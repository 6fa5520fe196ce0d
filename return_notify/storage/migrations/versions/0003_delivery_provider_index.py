"""index deliveries by provider message id (webhook lookups).

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_provider_msg", "deliveries",
                    ["provider", "provider_message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_provider_msg", table_name="deliveries")
