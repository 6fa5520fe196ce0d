"""insight reads: ``ix_deliveries_tenant_created (tenant_id, created_at)``, so that a tenant's
latest notifications (what ``stats`` and ``GET /v1/stats`` compute channel preference and
the time split over, ``reporting/insight_summary.py``) are read along an index whatever
the tenant's share of a long history: without it, a small tenant's latest 20,000 meant
walking every tenant's rows back in time until 20,000 of its own turned up.

Built without blocking the pipeline: the index is declared on the partitioned table only
(``ON ONLY``: invalid, used by nothing yet), each partition's index is built
``CONCURRENTLY`` in an autocommit block, then attached (a catalogue change), which makes
the parent's valid. Partitions created later inherit it.

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NAME = "ix_deliveries_tenant_created"
COLUMNS = "tenant_id, created_at"


def _partitions() -> list[str]:
    return [str(r[0]) for r in op.get_bind().execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'deliveries'::regclass ORDER BY c.relname"))]


def upgrade() -> None:
    op.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON ONLY deliveries ({COLUMNS})")
    parts = _partitions()
    with op.get_context().autocommit_block():
        for part in parts:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {part}_tenant_created "
                       f"ON {part} ({COLUMNS})")
    attached = {str(r[0]) for r in op.get_bind().execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:n AS regclass)"), {"n": NAME})}
    for part in parts:
        if f"{part}_tenant_created" not in attached:
            op.execute(f"ALTER INDEX {NAME} ATTACH PARTITION {part}_tenant_created")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {NAME}")
