"""scoped stats: the KPI aggregates again by the return's region and product category, so a
regional or category manager's KPIs (``GET /v1/stats?region=EU``, ``stats --category``, a
principal limited to regions or categories) read aggregates instead of the raw rows.

Also the indexes the daily deletion of old bookkeeping rows needs
(``pipeline/housekeeping.py``, ``pipeline/retention.py``): ``inbox_items (created_at)`` and
``sandbox_messages (received_at)``, built ``CONCURRENTLY`` (outside a transaction: the
pipeline keeps writing meanwhile; a run interrupted there is simply started again).

Otherwise new, empty tables and an SQL function: no lock on an existing table.
``reporting/rollup.py`` fills them: from the oldest raw row up to the rollup's
watermark on its next runs (``scope_watermark`` in ``stats_state``), then with every hour
it rolls up; until they have caught up, scoped KPIs are counted from the raw rows as before.

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_UP = """
-- deliveries as stats_deliveries, also by the return's product category
CREATE TABLE IF NOT EXISTS stats_scope_deliveries (
    grain char(1) NOT NULL,
    bucket timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    channel varchar(16) NOT NULL,
    provider varchar(32),
    region varchar(32),
    category varchar(64),
    milestone varchar(32) NOT NULL,
    state varchar(16) NOT NULL,
    n bigint NOT NULL,
    n_sent bigint NOT NULL,
    n_delivered bigint NOT NULL,
    n_bounced bigint NOT NULL,
    n_read bigint NOT NULL,
    min_sent_at timestamptz,
    max_sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS ix_stats_scope_deliveries_bucket ON stats_scope_deliveries (grain, bucket);
CREATE INDEX IF NOT EXISTS ix_stats_scope_deliveries_tenant
    ON stats_scope_deliveries (tenant_id, grain, bucket);

-- latency histograms as stats_latency, also by the return's region and product category
CREATE TABLE IF NOT EXISTS stats_scope_latency (
    grain char(1) NOT NULL,
    bucket timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    region varchar(32),
    category varchar(64),
    channel varchar(16) NOT NULL,
    kind char(1) NOT NULL,
    lo_ms bigint NOT NULL,
    hi_ms bigint NOT NULL,
    n bigint NOT NULL,
    sum_s numeric NOT NULL
);
-- both covering: the month rows (of a tenant, or of all) are read by an index-only scan
-- (the table is many times their size: hour and day rows, and rows rewritten until vacuumed)
CREATE INDEX IF NOT EXISTS ix_stats_scope_latency_bucket ON stats_scope_latency
    (grain, bucket) INCLUDE (tenant_id, region, category, channel, kind, lo_ms, hi_ms, n, sum_s);
CREATE INDEX IF NOT EXISTS ix_stats_scope_latency_tenant ON stats_scope_latency
    (tenant_id, grain, bucket) INCLUDE (region, category, channel, kind, lo_ms, hi_ms, n, sum_s);

-- events received per hour per scope key: every region a scope may name that covers the
-- return's (EU-DE: EU-DE and EU) or '*', and its category or '*' (never both '*': that is
-- stats_event_hours); tenant_id 0: all tenants. The busiest minute of a key is exact; a
-- scope of several keys adds their hours up and finds its busiest minute from the raw
-- events of the few hours that could hold it (reporting/scoped.py).
CREATE TABLE IF NOT EXISTS stats_scope_event_hours (
    tenant_id integer NOT NULL,
    region_key varchar(32) NOT NULL,
    category_key varchar(64) NOT NULL,
    bucket timestamptz NOT NULL,
    n bigint NOT NULL,
    n_notified bigint NOT NULL,
    n_stale bigint NOT NULL,
    n_repeat bigint NOT NULL,
    n_no_channel bigint NOT NULL,
    peak_minute_n bigint NOT NULL,
    peak_minute_at timestamptz NOT NULL,
    min_at timestamptz NOT NULL,
    max_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, region_key, category_key, bucket)
);
CREATE INDEX IF NOT EXISTS ix_stats_scope_event_hours_bucket ON stats_scope_event_hours (bucket);

-- notifications sent, by hour created and hour sent, per tenant, region and category
CREATE TABLE IF NOT EXISTS stats_scope_sent_hours (
    bucket timestamptz NOT NULL,
    sent_hour timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    region varchar(32),
    category varchar(64),
    n bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_scope_sent_hours_tenant ON stats_scope_sent_hours
    (tenant_id, bucket) INCLUDE (sent_hour, region, category, n);
CREATE INDEX IF NOT EXISTS ix_stats_scope_sent_hours_bucket ON stats_scope_sent_hours
    (bucket) INCLUDE (sent_hour, tenant_id, region, category, n);

-- completion cohorts as stats_cohorts, also by the return's region and product category
CREATE TABLE IF NOT EXISTS stats_scope_cohorts (
    day timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    region varchar(32),
    category varchar(64),
    max_rank smallint NOT NULL,
    completed boolean NOT NULL,
    rejected boolean NOT NULL,
    cancelled boolean NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_scope_cohorts_tenant ON stats_scope_cohorts (tenant_id, day);
CREATE INDEX IF NOT EXISTS ix_stats_scope_cohorts_day ON stats_scope_cohorts (day);

-- the scope keys of a return: (each '-'-prefix of upper(region), or '*') x
-- (lower(category), or '*'), without ('*', '*'); a region EU covers EU-DE, not EUR
CREATE OR REPLACE FUNCTION rsn_scope_keys(region text, category text,
                                          OUT region_key text, OUT category_key text)
RETURNS SETOF record LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT rk, ck
  FROM (SELECT array_to_string(p[1:i], '-') AS rk
        FROM (SELECT string_to_array(upper(region), '-') AS p) a,
             generate_series(1, cardinality(a.p)) i
        UNION ALL SELECT '*') rks
  CROSS JOIN (SELECT lower(category) AS ck WHERE category IS NOT NULL UNION ALL SELECT '*') cks
  WHERE NOT (rk = '*' AND ck = '*')
$$;
"""


def upgrade() -> None:
    op.execute(_UP)
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_inbox_items_created "
                   "ON inbox_items (created_at)")
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_sandbox_messages_received "
                   "ON sandbox_messages (received_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_inbox_items_created")
    op.execute("DROP INDEX IF EXISTS ix_sandbox_messages_received")
    for table in ("stats_scope_deliveries", "stats_scope_latency", "stats_scope_event_hours",
                  "stats_scope_sent_hours", "stats_scope_cohorts"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS rsn_scope_keys(text, text)")
    op.execute("DELETE FROM stats_state WHERE name = 'scope_watermark'")
