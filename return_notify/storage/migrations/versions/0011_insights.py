"""insights: the tenant's tracking and survey switches, engagement signals (opens and clicks)
and customer satisfaction ratings.

No foreign key into ``events``, ``deliveries``, ``delivery_attempts`` or ``rejected_events``
(monthly partitioned tables): ``return_pk`` and ``delivery_id`` are plain, indexed bigints,
like ``inbox_items.delivery_id``. Nothing here is personal data: ids, a channel, a
milestone, a time and a score.

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tenant(primary_key: bool = False) -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False, primary_key=primary_key)


def upgrade() -> None:
    op.create_table(
        "tenant_insights",
        _tenant(primary_key=True),
        sa.Column("tracking", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        # when tracking was last switched on (NULL while off): the start of the open and
        # click rates' denominator
        sa.Column("tracking_since", TS, nullable=True),
        sa.Column("survey", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("survey_milestones", ARRAY(sa.String(32)),
                  server_default=sa.text("'{return_completed}'"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.CheckConstraint("cardinality(survey_milestones) >= 1 AND survey_milestones <@ "
                           "ARRAY['return_completed', 'refund_processed']::varchar[]",
                           name="ck_tenant_insights_survey_milestones"),
    )
    op.create_table(
        "engagement_signals",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        _tenant(),
        sa.Column("return_pk", sa.BigInteger(), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("milestone", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("received_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("channel IN ('email', 'sms', 'inapp')",
                           name="ck_engagement_signals_channel"),
        sa.CheckConstraint("kind IN ('open', 'click')", name="ck_engagement_signals_kind"),
        sa.UniqueConstraint("return_pk", "milestone", "channel", "kind",
                            name="uq_engagement_signals_once"),
    )
    op.create_index("ix_engagement_signals_tenant_at", "engagement_signals", ["tenant_id", "at"])
    op.create_index("ix_engagement_signals_delivery", "engagement_signals", ["delivery_id"])
    op.create_table(
        "satisfaction_ratings",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        _tenant(),
        sa.Column("return_pk", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("milestone", sa.String(32), nullable=True),
        sa.Column("first_rated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("rated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("changes", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name="ck_satisfaction_ratings_score"),
        sa.CheckConstraint("source IN ('link', 'api', 'event')",
                           name="ck_satisfaction_ratings_source"),
        sa.UniqueConstraint("return_pk", name="uq_satisfaction_ratings_return"),
    )
    op.create_index("ix_satisfaction_ratings_tenant", "satisfaction_ratings",
                    ["tenant_id", "rated_at"])


def downgrade() -> None:
    op.drop_table("satisfaction_ratings")
    op.drop_table("engagement_signals")
    op.drop_table("tenant_insights")
