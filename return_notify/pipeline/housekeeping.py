"""Bounded bookkeeping tables: the rows outside the monthly partitions that nothing else
would ever delete, deleted in short batches by the daily history maintenance
(``history.run_maintenance``, ``return-notify db maintain``).

* ``inbox_items``: leave with their deliveries' month: with ``RSN_HISTORY_MONTHS`` set,
  items created before the first day of the oldest kept month are deleted (their
  deliveries' partitions are dropped in the same run; the KPI aggregates keep their read
  counts). Their content and owner were already redacted after ``RSN_RETENTION_DAYS``.
* ``webhook_events`` (provider event ids seen, to skip a redelivered webhook): kept
  ``WEBHOOK_EVENTS_DAYS``; providers redeliver a webhook within hours (SendGrid up to
  24 h, Twilio within minutes), so an older id is never seen again.
* ``sandbox_messages`` are deleted by the retention purge after ``RSN_RETENTION_DAYS``
  (``retention.PURGE``): they are copies of sent content.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text

from return_notify.storage.partitions import Month

WEBHOOK_EVENTS_DAYS = 7
BATCH_SIZE = 5000

# one batch: up to :n rows older than :cutoff (indexed on the time column), SKIP LOCKED
_DELETE = {
    "inbox_items": """
        WITH b AS (SELECT id FROM inbox_items WHERE created_at < :cutoff
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        DELETE FROM inbox_items i USING b WHERE i.id = b.id""",
    "webhook_events": """
        WITH b AS (SELECT id FROM webhook_events WHERE received_at < :cutoff
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        DELETE FROM webhook_events w USING b WHERE w.id = b.id""",
}


def cutoffs(history_months: int, now: datetime | None = None) -> dict[str, datetime]:
    """Per table, the time before which its rows go (a table absent: kept)."""
    now = now or datetime.now(UTC)
    out = {"webhook_events": now - timedelta(days=WEBHOOK_EVENTS_DAYS)}
    if history_months > 0:
        out["inbox_items"] = Month.of(now).plus(-history_months).start
    return out


def expire_rows(conn: Connection, history_months: int, now: datetime | None = None,
                batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Delete the expired rows, one short transaction per batch; rows deleted per table.
    ``conn``: not in a transaction."""
    counts: dict[str, int] = {}
    for table, cutoff in cutoffs(history_months, now).items():
        total = 0
        while True:
            with conn.begin():
                n = conn.execute(text(_DELETE[table]), {"cutoff": cutoff, "n": batch_size})
            total += int(n.rowcount or 0)
            if (n.rowcount or 0) < batch_size:
                break
        counts[table] = total
    return counts
