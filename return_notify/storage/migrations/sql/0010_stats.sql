-- Migration 0010, part 2: the KPI aggregates (reporting/rollup.py keeps them) and the
-- statement-level triggers that mark which hours changed since the last rollup.
-- All times are bucketed in UTC.

CREATE TABLE IF NOT EXISTS stats_state (
    name varchar(32) PRIMARY KEY,
    at timestamptz
);
COMMENT ON TABLE stats_state IS
  'watermark: every hour before it is rolled up (later changes are marked in stats_dirty)';

CREATE TABLE IF NOT EXISTS stats_dirty (
    id bigserial PRIMARY KEY,
    kind char(1) NOT NULL,          -- d: deliveries (by created_at), e: events, r: rejected
    hour timestamptz NOT NULL
);
COMMENT ON TABLE stats_dirty IS 'hours whose rows changed after they were rolled up';

-- one row per (grain, bucket, tenant, channel, provider, region, milestone, state);
-- grain h (kept RSN_STATS_HOURLY_DAYS), d and m (kept); bucket = created_at truncated
CREATE TABLE IF NOT EXISTS stats_deliveries (
    grain char(1) NOT NULL,
    bucket timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    channel varchar(16) NOT NULL,
    provider varchar(32),
    region varchar(32),
    milestone varchar(32) NOT NULL,
    state varchar(16) NOT NULL,
    n bigint NOT NULL,
    n_sent bigint NOT NULL,         -- sent_at IS NOT NULL
    n_delivered bigint NOT NULL,    -- delivered_at IS NOT NULL
    n_bounced bigint NOT NULL,      -- failed with last_error 'bounced: ...'
    n_read bigint NOT NULL,         -- in-app items read
    min_sent_at timestamptz,
    max_sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS ix_stats_deliveries_bucket ON stats_deliveries (grain, bucket);
CREATE INDEX IF NOT EXISTS ix_stats_deliveries_tenant
    ON stats_deliveries (tenant_id, grain, bucket);

-- latency histograms (occurred_at -> sent_at: kind s, -> delivered_at: kind d), buckets of
-- two significant digits in milliseconds (three from 10^7 ms) [lo_ms, hi_ms)
CREATE TABLE IF NOT EXISTS stats_latency (
    grain char(1) NOT NULL,
    bucket timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    channel varchar(16) NOT NULL,
    kind char(1) NOT NULL,
    lo_ms bigint NOT NULL,
    hi_ms bigint NOT NULL,
    n bigint NOT NULL,
    sum_s numeric NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_latency_bucket ON stats_latency (grain, bucket);
CREATE INDEX IF NOT EXISTS ix_stats_latency_tenant ON stats_latency (tenant_id, grain, bucket);

-- events received per hour, per tenant and for all tenants (tenant_id 0), with the
-- hour's busiest minute
CREATE TABLE IF NOT EXISTS stats_event_hours (
    tenant_id integer NOT NULL,
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
    PRIMARY KEY (tenant_id, bucket)
);

-- notifications sent, by hour created and hour sent (tenant_id 0: all tenants)
CREATE TABLE IF NOT EXISTS stats_sent_hours (
    tenant_id integer NOT NULL,
    bucket timestamptz NOT NULL,
    sent_hour timestamptz NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (tenant_id, bucket, sent_hour)
);

CREATE TABLE IF NOT EXISTS stats_rejected_hours (
    bucket timestamptz NOT NULL,
    tenant varchar(128),
    n bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_rejected_hours_bucket ON stats_rejected_hours (bucket);

-- per return: what its events reached (monotone: merged, never recomputed from all events,
-- so a return keeps its summary when old partitions are dropped)
CREATE TABLE IF NOT EXISTS stats_returns (
    return_pk bigint PRIMARY KEY,
    tenant_id integer NOT NULL,
    initiated_at timestamptz,        -- the earliest return_initiated occurred_at
    last_initiated_at timestamptz,   -- the latest one
    max_rank smallint NOT NULL,      -- highest main-line milestone rank reached (0: none)
    completed boolean NOT NULL,
    rejected boolean NOT NULL,
    cancelled boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_returns_initiated ON stats_returns (initiated_at);
CREATE INDEX IF NOT EXISTS ix_stats_returns_reinitiated ON stats_returns (last_initiated_at)
    WHERE last_initiated_at > initiated_at;

-- completion cohorts: returns by UTC day of initiation and what they reached
CREATE TABLE IF NOT EXISTS stats_cohorts (
    day timestamptz NOT NULL,
    tenant_id integer NOT NULL,
    max_rank smallint NOT NULL,
    completed boolean NOT NULL,
    rejected boolean NOT NULL,
    cancelled boolean NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stats_cohorts_day ON stats_cohorts (day);

-- the latency bucket of a duration in seconds: [lo_ms, hi_ms), two significant digits
-- (three from 10^7 ms); float8 is exact here (a duration has at most 3 decimals in ms and
-- every step is a power of ten, so no value lands on the wrong side of a bound)
CREATE OR REPLACE FUNCTION rsn_latency_bucket(s numeric, OUT lo_ms bigint, OUT hi_ms bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN s >= 0 THEN lo ELSE -(lo + step) END::bigint,
         CASE WHEN s >= 0 THEN lo + step ELSE -lo END::bigint
  FROM (SELECT floor(a / step) * step AS lo, step
        FROM (SELECT a, CASE WHEN a < 100 THEN 1 WHEN a < 1000 THEN 10 WHEN a < 1e4 THEN 100
                             WHEN a < 1e5 THEN 1e3 WHEN a < 1e6 THEN 1e4 WHEN a < 1e8 THEN 1e5
                             WHEN a < 1e9 THEN 1e6 ELSE 1e8 END::float8 AS step
              FROM (SELECT abs(s::float8) * 1000 AS a) x) y) z
$$;

CREATE OR REPLACE FUNCTION rsn_stats_mark_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_dirty (kind, hour)
    SELECT DISTINCT 'd', date_trunc('hour', created_at, 'UTC') FROM changed;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION rsn_stats_mark_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_dirty (kind, hour)
    SELECT DISTINCT 'e', date_trunc('hour', received_at, 'UTC') FROM changed;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION rsn_stats_mark_rejected() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_dirty (kind, hour)
    SELECT DISTINCT 'r', date_trunc('hour', received_at, 'UTC') FROM changed;
    RETURN NULL;
END $$;

-- an in-app item read changes its delivery's engagement numbers
CREATE OR REPLACE FUNCTION rsn_stats_mark_inbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_dirty (kind, hour)
    SELECT DISTINCT 'd', date_trunc('hour', d.created_at, 'UTC')
    FROM changed c JOIN deliveries d ON d.id = c.delivery_id;
    RETURN NULL;
END $$;
