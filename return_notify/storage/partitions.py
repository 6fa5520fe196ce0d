"""Monthly partitions of the history tables: the id scheme, creating months ahead, listing,
draining the default partition and detaching or dropping old months (DDL only; the
retention and archive use case is ``pipeline/history.py``).

**Ids carry their month.** ``events``, ``deliveries`` and ``rejected_events`` are
partitioned by range of ``id``, ``delivery_attempts`` by range of ``delivery_id``; a new id
is ``YYYYMM × 10^10 + sequence value mod 10^10`` (``rsn_month_id``), e.g.
``2026110000012345`` — below 2^53, so JSON clients read it exactly. A lookup by id prunes to
one partition from the id alone, so claiming and writing back deliveries by id costs one
index probe however many months are kept. A delivery takes its *event's* month
(``rsn_id_like``) and an attempt lives in its delivery's partition, so an event, its
deliveries and their attempts sit in the same month and leave together; each month's
``deliveries`` partition has a foreign key to the same month's ``events`` partition and
``delivery_attempts`` to ``deliveries``, and the unique ``(event_pk, channel)`` of a
delivery is an index of each partition (PostgreSQL cannot make it global without the
partition key; co-location makes the per-partition index global in effect).

Rows from before the conversion (migration ``0010``) keep their small ids in the
``*_legacy`` partition (``MINVALUE`` up to the first month); ids whose month has no
partition go to ``*_default``, which the maintenance task empties once the month exists.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

ID_MONTH_FACTOR = 10_000_000_000
#: the partitioned tables, parents before children (create in this order, drop reversed)
TABLES = ("events", "deliveries", "delivery_attempts", "rejected_events")
PARTITION_KEY = {"events": "id", "deliveries": "id", "delivery_attempts": "delivery_id",
                 "rejected_events": "id"}
#: each partition's primary key (the parent's: it includes the partition key)
PRIMARY_KEY = {"events": "id", "deliveries": "id", "delivery_attempts": "delivery_id, id",
               "rejected_events": "id"}
#: per-partition foreign keys: to the same month's partition of the referenced table
LOCAL_FKS: dict[str, tuple[str, str, str]] = {
    "deliveries": ("event_pk", "events", "NO ACTION"),
    "delivery_attempts": ("delivery_id", "deliveries", "CASCADE"),
}
#: per-partition unique indexes (name suffix, columns)
LOCAL_UNIQUE: dict[str, tuple[str, str]] = {"deliveries": ("event_channel", "event_pk, channel")}
LEGACY, DEFAULT = "legacy", "default"
_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?:p(?P<ym>\d{6})|(?P<special>legacy|default))$")
#: lock waits of the DDL below: give up quickly rather than queue the pipeline behind us
LOCK_TIMEOUT = "3s"


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month (UTC)."""

    year: int
    month: int

    @classmethod
    def of(cls, at: datetime) -> Month:
        at = at.astimezone(UTC)
        return cls(at.year, at.month)

    @classmethod
    def of_id(cls, row_id: int) -> Month | None:
        """The month an id was made in; None for an id from before the conversion."""
        ym = row_id // ID_MONTH_FACTOR
        return cls(ym // 100, ym % 100) if ym else None

    @classmethod
    def parse(cls, suffix: str) -> Month:
        return cls(int(suffix[:4]), int(suffix[4:6]))

    def plus(self, months: int) -> Month:
        n = self.year * 12 + self.month - 1 + months
        return Month(n // 12, n % 12 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def lo(self) -> int:
        """The first id of this month."""
        return (self.year * 100 + self.month) * ID_MONTH_FACTOR

    @property
    def hi(self) -> int:
        """The first id of the next month (exclusive upper bound)."""
        return self.plus(1).lo

    @property
    def suffix(self) -> str:
        return f"p{self.year:04d}{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def partition_name(table: str, month: Month | str) -> str:
    return f"{table}_{month.suffix if isinstance(month, Month) else month}"


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    kind: str  # "month", "legacy" or "default"
    month: Month | None
    attached: bool
    rows_estimate: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "partition": self.name, "kind": self.kind,
                "month": str(self.month) if self.month else None, "attached": self.attached,
                "rows_estimate": self.rows_estimate, "bytes": self.bytes}


_LIST = text("""
SELECT c.relname, (i.inhrelid IS NOT NULL) AS attached, greatest(c.reltuples, 0)::bigint,
       pg_total_relation_size(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
WHERE c.relkind = 'r'
  AND c.relname ~ '^(events|deliveries|delivery_attempts|rejected_events)_(p[0-9]{6}|legacy|default)$'
""")


def list_partitions(conn: Connection) -> list[Partition]:
    """Every partition of the history tables (and detached ones still waiting to be
    archived), oldest month first, with PostgreSQL's row estimate and size on disk."""
    out = []
    for name, attached, rows, size in conn.execute(_LIST):
        m = _NAME.match(name)
        if m is None or m["table"] not in TABLES:
            continue
        month = Month.parse(m["ym"]) if m["ym"] else None
        out.append(Partition(m["table"], name, "month" if month else m["special"], month,
                             bool(attached), int(rows), int(size)))
    order = {LEGACY: 0, "month": 1, DEFAULT: 2}
    return sorted(out, key=lambda p: (order[p.kind], p.month or Month(0, 1),
                                      TABLES.index(p.table)))


def _exists(conn: Connection, name: str) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar())


def _bound(month: Month | None, kind: str) -> str:
    if kind == DEFAULT:
        return "DEFAULT"
    if kind == LEGACY or month is None:
        raise ValueError("the legacy partition is made by migration 0010 only")
    return f"FOR VALUES FROM ({month.lo}) TO ({month.hi})"


def create_partition_sql(table: str, month: Month | None, kind: str = "month") -> list[str]:
    """DDL for one new, empty partition: built as a plain table and then attached (which
    takes only SHARE UPDATE EXCLUSIVE on the parent, so the pipeline keeps reading and
    writing); its local foreign key and unique index come first, on the empty table."""
    suffix = month.suffix if month else kind
    name = partition_name(table, suffix)
    stmts = [f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
             f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({PRIMARY_KEY[table]})"]
    if table in LOCAL_FKS:
        col, ref, action = LOCAL_FKS[table]
        stmts.append(f"ALTER TABLE {name} ADD CONSTRAINT fk_{name}_{col} FOREIGN KEY ({col}) "
                     f"REFERENCES {partition_name(ref, suffix)} (id) ON DELETE {action}")
    if table in LOCAL_UNIQUE:
        idx, cols = LOCAL_UNIQUE[table]
        stmts.append(f"CREATE UNIQUE INDEX uq_{name}_{idx} ON {name} ({cols})")
    stmts.append(f"ALTER TABLE {table} ATTACH PARTITION {name} {_bound(month, kind)}")
    return stmts


def _with_lock_timeout(conn: Connection, stmts: Iterable[str], attempts: int = 5) -> None:
    """Run ``stmts`` in one transaction that waits at most LOCK_TIMEOUT for each lock;
    retried with a growing pause (a long transaction elsewhere holds a table)."""
    stmts = list(stmts)
    if not stmts:
        return
    for attempt in range(1, attempts + 1):
        if conn.in_transaction():  # the reads before us autobegan one: end it
            conn.commit()
        try:
            with conn.begin():
                conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                for sql in stmts:
                    conn.execute(text(sql))
            return
        except OperationalError as exc:
            if "lock timeout" not in str(exc) or attempt == attempts:
                raise
            log.warning("partition DDL waited %s for a lock (attempt %d of %d); retrying",
                        LOCK_TIMEOUT, attempt, attempts)
            time.sleep(attempt)


def default_rows(conn: Connection, table: str, month: Month) -> int:
    name = partition_name(table, DEFAULT)
    if not _exists(conn, name):
        return 0
    key = PARTITION_KEY[table]
    return int(conn.execute(text(
        f"SELECT count(*) FROM {name} WHERE {key} >= :lo AND {key} < :hi"),
        {"lo": month.lo, "hi": month.hi}).scalar_one())


def legacy_upper(conn: Connection, table: str = "events") -> int | None:
    """The exclusive upper id bound of ``table``'s legacy partition (10^10 normally)."""
    bound = conn.execute(text(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = "
        "to_regclass(:n)"), {"n": partition_name(table, LEGACY)}).scalar()
    m = re.search(r"TO \('?(\d+)'?\)", bound or "")
    return int(m.group(1)) if m else None


def ensure_month(conn: Connection, month: Month) -> list[str]:
    """Create ``month``'s partition of every history table that lacks one (rows of that
    month already in a default partition move into it); returns the partitions created.
    ``conn`` must not be in a transaction (each month is one short transaction). A month
    still inside the legacy range (a database converted twice) keeps its rows there."""
    upper = legacy_upper(conn)
    if upper is not None and month.lo < upper:
        return []
    missing = [t for t in TABLES if not _exists(conn, partition_name(t, month))]
    if not missing:
        return []
    if any(default_rows(conn, t, month) for t in TABLES):
        _drain_default(conn, month, missing)
    else:
        _with_lock_timeout(conn, [s for t in missing for s in create_partition_sql(t, month)])
    created = [partition_name(t, month) for t in missing]
    log.info("created partitions %s", ", ".join(created))
    return created


def ensure_default(conn: Connection) -> list[str]:
    missing = [t for t in TABLES if not _exists(conn, partition_name(t, DEFAULT))]
    if not missing:
        return []
    _with_lock_timeout(conn, [s for t in missing for s in create_partition_sql(t, None, DEFAULT)])
    return [partition_name(t, DEFAULT) for t in missing]


def _drain_default(conn: Connection, month: Month, missing: list[str]) -> None:
    """Move ``month``'s rows out of the default partitions into new partitions of their
    own, in one transaction holding the parents (rows land in a default partition only
    when the maintenance task did not run for months: few rows, a short lock)."""
    stmts = [f"LOCK TABLE {', '.join(TABLES)} IN SHARE ROW EXCLUSIVE MODE"]
    for t in missing:
        name = partition_name(t, month)
        stmts += [s for s in create_partition_sql(t, month) if " ATTACH PARTITION " not in s]
        key = PARTITION_KEY[t]
        stmts.append(f"INSERT INTO {name} SELECT * FROM {partition_name(t, DEFAULT)} "
                     f"WHERE {key} >= {month.lo} AND {key} < {month.hi}")
    for t in reversed(missing):  # children first: the defaults' foreign keys hold throughout
        key = PARTITION_KEY[t]
        stmts.append(f"DELETE FROM {partition_name(t, DEFAULT)} "
                     f"WHERE {key} >= {month.lo} AND {key} < {month.hi}")
    stmts += [f"ALTER TABLE {t} ATTACH PARTITION {partition_name(t, month)} "
              f"{_bound(month, 'month')}" for t in missing]
    _with_lock_timeout(conn, stmts)
    log.warning("moved %s rows out of the default partitions", month)


def detach(conn: Connection, table: str, name: str) -> None:
    """Detach one partition (a brief ACCESS EXCLUSIVE lock on the parent: catalog only;
    no foreign key points at a history partition from another month, so no check runs)."""
    _with_lock_timeout(conn, [f"ALTER TABLE {table} DETACH PARTITION {name}"])


def drop(conn: Connection, names: Iterable[str]) -> None:
    """Drop partitions (attached or detached), in the order given: children first."""
    _with_lock_timeout(conn, [f"DROP TABLE IF EXISTS {n}" for n in names])
