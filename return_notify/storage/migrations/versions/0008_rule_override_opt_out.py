"""rules: ``override_opt_out`` lets a transactional rule override a customer's channel opt-out.

It never overrides an SMS STOP or an email unsubscribe/suppression (see ``preferences.py``).
Whether the rule's effective urgency is transactional is checked by the rules store and the
admin API (it depends on the milestone's default urgency, which is code, not schema).

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notification_rules",
                  sa.Column("override_opt_out", sa.Boolean(), server_default=sa.text("false"),
                            nullable=False))


def downgrade() -> None:
    op.drop_column("notification_rules", "override_opt_out")
