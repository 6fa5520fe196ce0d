"""history: partition events, deliveries, delivery_attempts and rejected_events by month;
``event_keys`` keeps event ids unique across months.

How an existing installation converts, and for how long it locks what
---------------------------------------------------------------------
Nothing is copied. Each old table becomes the ``*_legacy`` partition (the plain sequence
ids, below 10^10) of a new partitioned table of the same name:

1. *(no lock on the tables)* the id functions, ``event_keys`` and the empty partitioned
   parents (``*_part``) are created;
2. *(autocommit; the pipeline keeps reading and writing)* ``event_keys`` is filled from
   ``events`` in batches of 50,000; a ``CHECK (id < 10^10)`` is added ``NOT VALID`` (a
   brief ACCESS EXCLUSIVE lock, no scan, waiting at most 10 s) and validated, which reads
   the whole table under SHARE UPDATE EXCLUSIVE only; ``CREATE INDEX CONCURRENTLY`` builds
   the two indexes the new shape needs (``delivery_attempts (delivery_id, id)``,
   ``rejected_events (received_at)``);
3. *(one short transaction)* the four tables are locked ACCESS EXCLUSIVE (waiting at most
   ``lock_timeout`` = 10 s, then failing without change: run it again), the ``event_keys``
   of events that arrived during step 2 are added, the tables renamed and attached (the
   valid CHECK proves the partition bounds and the existing indexes and foreign keys are
   reused: no scan, no index build), the default partitions and this month's and the next
   two months' partitions created. This step takes well under a second whatever the size:
   the only lock that blocks the pipeline.

Step 2 reads each table once (9 M deliveries: 24 s in all, without blocking). A run
interrupted in step 1 or 2 can simply be started again. Rows, ids and foreign keys stay
as they are. The code of the previous version cannot ingest into the new shape (its
``ON CONFLICT ON CONSTRAINT uq_events_tenant_event``): stop the old ``events`` workers
before, start the new ones after; events wait in Redis meanwhile.

Downgrade copies every row back into plain tables under ACCESS EXCLUSIVE locks (the
pipeline stops for the duration of the copy): run it with the workers stopped.

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

F = 10_000_000_000  # ids are YYYYMM * F + sequence value mod F
TABLES = ("events", "deliveries", "delivery_attempts", "rejected_events")
KEY = {"events": "id", "deliveries": "id", "delivery_attempts": "delivery_id",
       "rejected_events": "id"}
BATCH = 50_000

_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION rsn_month_id(seq bigint, at timestamptz DEFAULT now())
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (extract(year FROM at AT TIME ZONE 'UTC')::bigint * 100
          + extract(month FROM at AT TIME ZONE 'UTC')::bigint) * {F} + seq % {F}
$$;
COMMENT ON FUNCTION rsn_month_id(bigint, timestamptz) IS
  'a history id: YYYYMM of at (UTC) * 10^10 + seq mod 10^10 (its monthly partition)';
CREATE OR REPLACE FUNCTION rsn_id_like(seq bigint, other bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT other - other % {F} + seq % {F}
$$;
COMMENT ON FUNCTION rsn_id_like(bigint, bigint) IS
  'a history id in the same month (partition) as the id other';
"""

# the parents: same columns as today's tables (LIKE), partitioned; objects on them get
# temporary names until step 3 renames the old ones away
_PARENTS = {
    "events": [
        "ALTER TABLE events_part ADD CONSTRAINT events_part_pkey PRIMARY KEY (id)",
        "ALTER TABLE events_part ADD CONSTRAINT fk_events_tenant FOREIGN KEY (tenant_id) "
        "REFERENCES tenants (id)",
        "ALTER TABLE events_part ADD CONSTRAINT fk_events_return FOREIGN KEY (return_pk) "
        "REFERENCES returns (id)",
        "CREATE INDEX ix_events_part_return ON events_part (return_pk)",
        "CREATE INDEX ix_events_part_received ON events_part (received_at)",
    ],
    "deliveries": [
        "ALTER TABLE deliveries_part ADD CONSTRAINT deliveries_part_pkey PRIMARY KEY (id)",
        "ALTER TABLE deliveries_part ADD CONSTRAINT fk_deliveries_tenant "
        "FOREIGN KEY (tenant_id) REFERENCES tenants (id)",
        "ALTER TABLE deliveries_part ADD CONSTRAINT fk_deliveries_return "
        "FOREIGN KEY (return_pk) REFERENCES returns (id)",
        "CREATE INDEX ix_deliveries_part_state_due ON deliveries_part (state, next_attempt_at)",
        "CREATE INDEX ix_deliveries_part_return ON deliveries_part (return_pk)",
        "CREATE INDEX ix_deliveries_part_created ON deliveries_part (created_at)",
        "CREATE INDEX ix_deliveries_part_provider_msg ON deliveries_part "
        "(provider, provider_message_id)",
    ],
    "delivery_attempts": [
        "ALTER TABLE delivery_attempts_part ADD CONSTRAINT delivery_attempts_part_pkey "
        "PRIMARY KEY (delivery_id, id)",
    ],
    "rejected_events": [
        "ALTER TABLE rejected_events_part ADD CONSTRAINT rejected_events_part_pkey "
        "PRIMARY KEY (id)",
        "CREATE INDEX ix_rejected_events_part_received ON rejected_events_part (received_at)",
    ],
}
# step 3: (old name -> legacy name) then (temporary name -> final name), indexes
_RENAMES = {
    "events": [("events_pkey", "events_legacy_pkey"),
               ("uq_events_tenant_event", "uq_events_legacy_tenant_event"),
               ("ix_events_return", "ix_events_legacy_return"),
               ("ix_events_received", "ix_events_legacy_received"),
               ("events_part_pkey", "events_pkey"),
               ("ix_events_part_return", "ix_events_return"),
               ("ix_events_part_received", "ix_events_received")],
    "deliveries": [("deliveries_pkey", "deliveries_legacy_pkey"),
                   ("uq_deliveries_event_channel", "uq_deliveries_legacy_event_channel"),
                   ("ix_deliveries_state_due", "ix_deliveries_legacy_state_due"),
                   ("ix_deliveries_return", "ix_deliveries_legacy_return"),
                   ("ix_deliveries_created", "ix_deliveries_legacy_created"),
                   ("ix_deliveries_provider_msg", "ix_deliveries_legacy_provider_msg"),
                   ("deliveries_part_pkey", "deliveries_pkey"),
                   ("ix_deliveries_part_state_due", "ix_deliveries_state_due"),
                   ("ix_deliveries_part_return", "ix_deliveries_return"),
                   ("ix_deliveries_part_created", "ix_deliveries_created"),
                   ("ix_deliveries_part_provider_msg", "ix_deliveries_provider_msg")],
    "delivery_attempts": [("ix_attempts_delivery", "ix_attempts_legacy_delivery"),
                          ("delivery_attempts_part_pkey", "delivery_attempts_pkey")],
    "rejected_events": [("rejected_events_pkey", "rejected_events_legacy_pkey"),
                        ("rejected_events_part_pkey", "rejected_events_pkey"),
                        ("ix_rejected_events_part_received", "ix_rejected_events_received")],
}
_PK = {"events": "id", "deliveries": "id", "delivery_attempts": "delivery_id, id",
       "rejected_events": "id"}
_LOCAL_FKS = {"deliveries": ("event_pk", "events", "NO ACTION"),
              "delivery_attempts": ("delivery_id", "deliveries", "CASCADE")}


def _exists(name: str) -> bool:
    return bool(op.get_bind().execute(text("SELECT to_regclass(:n) IS NOT NULL"),
                                      {"n": name}).scalar())


def _partitioned(name: str) -> bool:
    return bool(op.get_bind().execute(text(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c "
        "ON c.oid = p.partrelid WHERE c.relname = :n AND c.relnamespace = "
        "to_regnamespace(current_schema()))"), {"n": name}).scalar())


def _month(at: datetime, plus: int = 0) -> tuple[int, int]:
    n = at.year * 12 + at.month - 1 + plus
    return n // 12, n % 12 + 1


def _legacy_bound() -> int:
    """The legacy partition's upper bound: 10^10, above every plain sequence value (so
    any month, past or future, can have a partition of its own), or, for a database
    downgraded after running this revision, the first month after the month-carrying ids
    it still holds. Read back from the CHECK of an interrupted earlier run."""
    bind = op.get_bind()
    row = bind.execute(text(
        "SELECT substring(pg_get_constraintdef(oid) from '([0-9]{10,})') FROM pg_constraint "
        "WHERE conname = 'ck_events_legacy_range'")).first()
    if row and row[0]:
        return int(row[0])
    bound = F
    for table in TABLES:
        top = int(bind.execute(text(
            f"SELECT coalesce(max({KEY[table]}), 0) FROM {table}")).scalar_one()) // F
        if top:
            y, m = _month(datetime(top // 100, top % 100, 1, tzinfo=UTC), 1)
            bound = max(bound, (y * 100 + m) * F)
    return bound


def _partition_sql(table: str, suffix: str, bound: str) -> list[str]:
    name = f"{table}_{suffix}"
    out = [f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
           f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({_PK[table]})"]
    if table in _LOCAL_FKS:
        col, ref, action = _LOCAL_FKS[table]
        out.append(f"ALTER TABLE {name} ADD CONSTRAINT fk_{name}_{col} FOREIGN KEY ({col}) "
                   f"REFERENCES {ref}_{suffix} (id) ON DELETE {action}")
    if table == "deliveries":
        out.append(f"CREATE UNIQUE INDEX uq_{name}_event_channel ON {name} (event_pk, channel)")
    out.append(f"ALTER TABLE {table} ATTACH PARTITION {name} {bound}")
    return out


def upgrade() -> None:
    if _partitioned("events"):
        return  # converted by an earlier run that failed after step 3
    # 1. functions, the dedupe table, the parents
    op.execute(_FUNCTIONS)
    # the KPI aggregates and their change marks (kept by reporting/rollup.py)
    op.execute(files("return_notify.storage.migrations").joinpath("sql/0010_stats.sql")
               .read_text(encoding="utf-8"))
    op.execute("CREATE TABLE IF NOT EXISTS event_keys (tenant_id integer NOT NULL, "
               "event_id varchar(128) NOT NULL, CONSTRAINT event_keys_pkey "
               "PRIMARY KEY (tenant_id, event_id))")
    op.execute("COMMENT ON TABLE event_keys IS 'one row per (tenant, event id) of the events "
               "kept: the idempotency check across monthly partitions'")
    for table in TABLES:
        if _exists(f"{table}_part"):
            continue
        op.execute(f"CREATE TABLE {table}_part (LIKE {table} INCLUDING DEFAULTS "
                   f"INCLUDING CONSTRAINTS) PARTITION BY RANGE ({KEY[table]})")
        for sql in _PARENTS[table]:
            op.execute(sql)
    first = _legacy_bound()
    with op.get_context().autocommit_block():
        keyed = _prepare_online(first)
    _switch(first, keyed)


def _prepare_online(first: int) -> int:
    """Step 2: the long reads, each without a lock that blocks the pipeline; returns the
    highest event id whose key is in ``event_keys``."""
    bind = op.get_bind()
    top = int(bind.execute(text("SELECT coalesce(max(id), 0) FROM events")).scalar_one())
    lo = -1
    while lo < top:  # keyset batches: ids may be sparse
        hi = bind.execute(text(
            "SELECT max(id) FROM (SELECT id FROM events WHERE id > :a ORDER BY id LIMIT :n) b"),
            {"a": lo, "n": BATCH}).scalar()
        if hi is None:
            break
        bind.execute(text(
            "INSERT INTO event_keys (tenant_id, event_id) SELECT tenant_id, event_id FROM events "
            "WHERE id > :a AND id <= :b ON CONFLICT DO NOTHING"), {"a": lo, "b": hi})
        lo = int(hi)
    for table in TABLES:
        ck = f"ck_{table}_legacy_range"
        if not bind.execute(text("SELECT 1 FROM pg_constraint WHERE conname = :n"),
                            {"n": ck}).first():
            bind.execute(text("SET lock_timeout = '10s'"))
            bind.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {ck} "
                              f"CHECK ({KEY[table]} < {first}) NOT VALID"))
            bind.execute(text("RESET lock_timeout"))
        bind.execute(text(f"ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"))
    bind.execute(text("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "
                      "delivery_attempts_legacy_pkey ON delivery_attempts (delivery_id, id)"))
    bind.execute(text("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_rejected_events_legacy_received "
                      "ON rejected_events (received_at)"))
    return int(top)


def _switch(first: int, keyed: int) -> None:
    """Step 3: one short transaction under ACCESS EXCLUSIVE locks: no scan, no index build."""
    op.execute("SET LOCAL lock_timeout = '10s'")
    op.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
    # event ids that arrived while step 2 ran
    op.execute(f"INSERT INTO event_keys (tenant_id, event_id) SELECT tenant_id, event_id "
               f"FROM events WHERE id > {keyed} ON CONFLICT DO NOTHING")
    # an index-backed primary key for the attempts' new key: the parent's needs one
    op.execute("ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey")
    op.execute("ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_legacy_pkey "
               "PRIMARY KEY USING INDEX delivery_attempts_legacy_pkey")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_legacy")
        op.execute(f"ALTER TABLE {table}_part RENAME TO {table}")
        for old, new in _RENAMES[table]:
            op.execute(f"ALTER INDEX {old} RENAME TO {new}")
        op.execute(f"ALTER TABLE {table} ATTACH PARTITION {table}_legacy "
                   f"FOR VALUES FROM (MINVALUE) TO ({first})")
        op.execute(f"ALTER TABLE {table}_legacy DROP CONSTRAINT ck_{table}_legacy_range")
    for table, seq in (("events", "events_id_seq"), ("deliveries", "deliveries_id_seq"),
                       ("rejected_events", "rejected_events_id_seq")):
        op.execute(f"ALTER SEQUENCE {seq} OWNED BY {table}.id")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT "
                   f"rsn_month_id(nextval('{seq}'))")
    op.execute("ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id")
    for table in TABLES:
        for sql in _partition_sql(table, "default", "DEFAULT"):
            op.execute(sql)
    for table, fn, events in (("deliveries", "deliveries", ("INSERT", "UPDATE")),
                              ("events", "events", ("INSERT",)),
                              ("rejected_events", "rejected", ("INSERT",)),
                              ("inbox_items", "inbox", ("UPDATE",))):
        for ev in events:  # statement-level: one small insert per statement, not per row
            op.execute(f"CREATE TRIGGER stats_mark_{ev.lower()} AFTER {ev} ON {table} "
                       f"REFERENCING NEW TABLE AS changed FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION rsn_stats_mark_{fn}()")
    for plus in range(3):  # this month and the next two (beat makes the later ones)
        y, m = _month(datetime.now(UTC), plus)
        ny, nm = _month(datetime(y, m, 1, tzinfo=UTC), 1)
        if (y * 100 + m) * F < first:
            continue  # still inside the legacy range (a re-upgraded database)
        bound = f"FOR VALUES FROM ({(y * 100 + m) * F}) TO ({(ny * 100 + nm) * F})"
        for table in TABLES:
            for sql in _partition_sql(table, f"p{y:04d}{m:02d}", bound):
                op.execute(sql)


def downgrade() -> None:
    """Back to plain tables: every row copied (ACCESS EXCLUSIVE for the whole copy)."""
    op.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
    seqs = {t: f"{t}_id_seq" for t in TABLES}
    for table in TABLES:
        op.execute(f"CREATE TABLE {table}_flat (LIKE {table} INCLUDING DEFAULTS "
                   "INCLUDING CONSTRAINTS)")
        op.execute(f"ALTER TABLE {table}_flat ALTER COLUMN id SET DEFAULT "
                   f"nextval('{seqs[table]}')")
        op.execute(f"ALTER SEQUENCE {seqs[table]} OWNED BY {table}_flat.id")
        op.execute(f"INSERT INTO {table}_flat SELECT * FROM {table}")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table} CASCADE")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table}_flat RENAME TO {table}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE events ADD CONSTRAINT uq_events_tenant_event "
               "UNIQUE (tenant_id, event_id)")
    op.execute("ALTER TABLE events ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id)")
    op.execute("ALTER TABLE events ADD FOREIGN KEY (return_pk) REFERENCES returns (id)")
    op.execute("CREATE INDEX ix_events_received ON events (received_at)")
    op.execute("CREATE INDEX ix_events_return ON events (return_pk)")
    op.execute("ALTER TABLE deliveries ADD CONSTRAINT uq_deliveries_event_channel "
               "UNIQUE (event_pk, channel)")
    for col, ref in (("tenant_id", "tenants"), ("event_pk", "events"), ("return_pk", "returns")):
        op.execute(f"ALTER TABLE deliveries ADD FOREIGN KEY ({col}) REFERENCES {ref} (id)")
    op.execute("CREATE INDEX ix_deliveries_created ON deliveries (created_at)")
    op.execute("CREATE INDEX ix_deliveries_return ON deliveries (return_pk)")
    op.execute("CREATE INDEX ix_deliveries_state_due ON deliveries (state, next_attempt_at)")
    op.execute("CREATE INDEX ix_deliveries_provider_msg ON deliveries "
               "(provider, provider_message_id)")
    op.execute("ALTER TABLE delivery_attempts ADD FOREIGN KEY (delivery_id) "
               "REFERENCES deliveries (id) ON DELETE CASCADE")
    op.execute("CREATE INDEX ix_attempts_delivery ON delivery_attempts (delivery_id)")
    op.execute("DROP TRIGGER IF EXISTS stats_mark_update ON inbox_items")
    for t in ("stats_state", "stats_dirty", "stats_deliveries", "stats_latency",
              "stats_event_hours", "stats_sent_hours", "stats_rejected_hours", "stats_returns",
              "stats_cohorts"):
        op.execute(f"DROP TABLE IF EXISTS {t}")
    for fn in ("rsn_stats_mark_deliveries()", "rsn_stats_mark_events()",
               "rsn_stats_mark_rejected()", "rsn_stats_mark_inbox()",
               "rsn_latency_bucket(numeric)"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.execute("DROP TABLE event_keys")
    op.execute("DROP FUNCTION rsn_id_like(bigint, bigint)")
    op.execute("DROP FUNCTION rsn_month_id(bigint, timestamptz)")
