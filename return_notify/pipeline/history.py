"""Bounded history: monthly partitions created ahead, and whole months dropped once older
than ``RSN_HISTORY_MONTHS`` — detached and exported first when ``RSN_ARCHIVE_DIR`` is set.

A month leaves as one unit: its ``delivery_attempts``, ``deliveries``, ``events`` and
``rejected_events`` partitions (children first: their foreign keys point only inside the
month, so no referential check scans anything) and the ``event_keys`` of its events, after
which a re-sent event id of that month counts as new (the lifecycle rules, on the ``returns``
table that is kept, keep it from notifying about a milestone the return already passed).
Dropping a partition is a catalog change: no row-by-row DELETE, no bloat left behind.

Archive format (one directory per month, ``<RSN_ARCHIVE_DIR>/<YYYY-MM>/``): for each table
``<table>.csv.gz``, PostgreSQL's CSV (``COPY … WITH (FORMAT csv, HEADER)``, UTF-8, NULL as an
empty unquoted field) of every column, ordered by the primary key, and ``manifest.json``
with the month, every file's table, partition, row count, SHA-256 and columns (name and
PostgreSQL type), the schema revision and the export time. A month is exported into
``.<YYYY-MM>.partial`` and renamed when complete; its partitions are dropped only then.
The legacy partitions (rows from before migration 0010) go the same way, as ``legacy``,
once their newest row is older than the retained months.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from return_notify.pipeline.housekeeping import expire_rows
from return_notify.storage import partitions as parts
from return_notify.storage.partitions import DEFAULT, LEGACY, TABLES, Month

log = logging.getLogger(__name__)

KEYS_BATCH = 50_000
_CHILDREN_FIRST = tuple(reversed(TABLES))


@dataclass
class PruneResult:
    dropped: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    event_keys_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"dropped": self.dropped, "archived": self.archived,
                "event_keys_deleted": self.event_keys_deleted}


def run_maintenance(conn: Connection, history_months: int, ahead: int,
                    archive_dir: str | None = None, now: datetime | None = None
                    ) -> dict[str, Any]:
    """Partitions ahead, then the expired months dropped or archived, then the expired
    rows of the bookkeeping tables (``housekeeping``) deleted (the beat task's and
    ``return-notify db maintain``'s work). ``conn``: not in a transaction."""
    created = maintain_partitions(conn, ahead, now)
    revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    conn.commit()
    pruned = prune(conn, history_months, archive_dir, now,
                   revision=str(revision) if revision else None)
    deleted = expire_rows(conn, history_months, now)
    return {"created": created, **pruned.as_dict(), "rows_deleted": deleted}


def maintain_partitions(conn: Connection, ahead: int, now: datetime | None = None) -> list[str]:
    """Make sure this month's and the next ``ahead`` months' partitions (and the default
    ones) exist; returns the partitions created. ``conn``: not in a transaction."""
    current = Month.of(now or datetime.now(UTC))
    created = parts.ensure_default(conn)
    for i in range(ahead + 1):
        created += parts.ensure_month(conn, current.plus(i))
    return created


def expired(conn: Connection, history_months: int, now: datetime | None = None) -> list[str]:
    """The months (``YYYY-MM``, and ``legacy``) whose rows are all older than the kept ones:
    months before the current month minus ``history_months``."""
    if history_months <= 0:
        return []
    oldest_kept = Month.of(now or datetime.now(UTC)).plus(-history_months)
    found = parts.list_partitions(conn)
    months = sorted({p.month for p in found if p.month is not None and p.month < oldest_kept})
    out = [str(m) for m in months]
    if any(p.kind == LEGACY for p in found) and _legacy_expired(conn, oldest_kept.start):
        out.insert(0, LEGACY)
    return out


def _legacy_expired(conn: Connection, cutoff: datetime) -> bool:
    """The legacy partitions' newest rows are older than ``cutoff`` and none of their
    deliveries is still in flight (indexed lookups; the parents' partitions may be gone)."""
    row = conn.execute(text("""
        SELECT (SELECT max(received_at) FROM events_legacy),
               (SELECT max(created_at) FROM deliveries_legacy),
               (SELECT max(received_at) FROM rejected_events_legacy),
               EXISTS (SELECT 1 FROM deliveries_legacy WHERE state IN
                       ('pending', 'sending', 'retrying', 'scheduled'))
    """)).one()
    if conn.in_transaction():
        conn.commit()
    newest = [t for t in row[:3] if t is not None]
    return not row[3] and all(t < cutoff for t in newest)


def prune(conn: Connection, history_months: int, archive_dir: str | None = None,
          now: datetime | None = None, revision: str | None = None) -> PruneResult:
    """Drop (after exporting, with ``archive_dir``) every expired month, oldest first.
    Months detached by an earlier run whose export failed are exported first."""
    result = PruneResult()
    pending = sorted({(p.month, p.kind) for p in parts.list_partitions(conn) if not p.attached},
                     key=lambda mk: (mk[1] != LEGACY, mk[0] or Month(0, 1)))
    labels = [str(m) if m else LEGACY for m, kind in pending if kind != DEFAULT]
    for label in expired(conn, history_months, now):
        if label not in labels:
            labels.append(label)
    for label in labels:
        suffix = LEGACY if label == LEGACY else Month.parse(label.replace("-", "")).suffix
        names = [parts.partition_name(t, suffix) for t in _CHILDREN_FIRST]
        result.event_keys_deleted += _forget_event_keys(conn, parts.partition_name("events", suffix))
        if archive_dir:
            for table, name in zip(_CHILDREN_FIRST, names, strict=True):
                if _attached(conn, name):
                    parts.detach(conn, table, name)
            export_month(conn, label, names, Path(archive_dir), revision)
            result.archived.append(label)
        parts.drop(conn, names)
        result.dropped += names
        log.info("history: dropped %s (%s)", label, ", ".join(names))
    return result


def _attached(conn: Connection, name: str) -> bool:
    found = bool(conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(:n))"),
        {"n": name}).scalar())
    if conn.in_transaction():
        conn.commit()
    return found


def _forget_event_keys(conn: Connection, events_partition: str) -> int:
    """Delete the ``event_keys`` of one events partition, in short batches by event id."""
    if conn.execute(text("SELECT to_regclass(:n) IS NULL"), {"n": events_partition}).scalar():
        conn.commit()
        return 0
    conn.commit()
    total, lo = 0, None
    while True:  # keyset batches by event id, one short transaction each
        with conn.begin():
            hi = conn.execute(text(
                f"SELECT max(id) FROM (SELECT id FROM {events_partition} WHERE id > "
                f"coalesce(CAST(:a AS bigint), -1) ORDER BY id LIMIT :n) b"),
                {"a": lo, "n": KEYS_BATCH}).scalar()
            if hi is None:
                return total
            res = conn.execute(text(
                f"DELETE FROM event_keys k USING {events_partition} e WHERE e.id > "
                "coalesce(CAST(:a AS bigint), -1) AND e.id <= :b AND k.tenant_id = e.tenant_id "
                "AND k.event_id = e.event_id"), {"a": lo, "b": hi})
            total += int(getattr(res, "rowcount", 0) or 0)
        lo = int(hi)


_COLUMNS = text("""
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = to_regclass(:n) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
""")
_ORDER = {"delivery_attempts": "delivery_id, id"}


def export_month(conn: Connection, label: str, names: list[str], root: Path,
                 revision: str | None = None) -> Path:
    """Export one month's (detached) partitions to ``root/<label>/`` (format: module doc)."""
    final = root / label
    if (final / "manifest.json").exists():
        return final  # exported by an earlier run that stopped before the drop
    tmp = root / f".{label}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files: list[dict[str, Any]] = []
    for table, name in zip(_CHILDREN_FIRST, names, strict=True):
        if conn.execute(text("SELECT to_regclass(:n) IS NULL"), {"n": name}).scalar():
            continue
        columns = [{"name": c, "type": t} for c, t in conn.execute(_COLUMNS, {"n": name})]
        rows = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
        conn.commit()
        path = tmp / f"{table}.csv.gz"
        order = _ORDER.get(table, "id")
        _copy_out(conn, f"COPY (SELECT * FROM {name} ORDER BY {order}) TO STDOUT "
                        "WITH (FORMAT csv, HEADER)", path)
        files.append({"table": table, "partition": name, "file": path.name, "rows": rows,
                      "sha256": _sha256(path), "columns": columns})
    manifest = {"month": label, "format": "csv+gzip (PostgreSQL COPY, FORMAT csv, HEADER)",
                "schema_revision": revision, "exported_at": datetime.now(UTC).isoformat(),
                "files": files}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    log.info("history: exported %s to %s (%s rows)", label, final,
             sum(int(f["rows"]) for f in files))
    return final


def _copy_out(conn: Connection, sql: str, path: Path) -> None:
    raw: Any = conn.connection.dbapi_connection
    with gzip.open(path, "wb", compresslevel=6) as out, raw.cursor() as cur:
        cur.copy_expert(sql, out)
    raw.commit()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
