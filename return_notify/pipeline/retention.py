"""Data protection: purge rendered content and personal data after ``RSN_RETENTION_DAYS``,
and erase one customer's personal data on request; anonymised rows stay for the KPIs.

What is kept: every row's ids, tenant, milestone, channel, provider, states, timestamps,
attempt outcomes and error classes/codes, in-app ``read_at`` — so counts, success rates,
latencies, the funnel and engagement are unchanged. What goes: recipients, rendered
subjects and bodies, customer name/e-mail/phone in stored event payloads, provider error
messages (they quote addresses), in-app item content and owner, and the raw payload of
rejected events; the sandbox provider's copies are deleted whole. Suppressions are kept
on purpose: an opt-out must keep being honoured after the customer's other data is gone.
(Rows that leave with their month: ``history`` and ``housekeeping``.)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.storage.models import TERMINAL_STATES
from return_notify.storage.tenants import find_tenant_id

ERASED = "(erased)"
REDACTED_JSON = '"[redacted]"'
BATCH_SIZE = 5000

SessionFactory = Callable[[], AbstractContextManager[Session]]

#: SQL that masks e-mail addresses and phone numbers inside free text (error messages)
_SCRUB = (r"regexp_replace(regexp_replace({col}, '[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+)', "
          r"'***@\1', 'g'), '\+[0-9]{{3,11}}([0-9]{{4}})', '+***\1', 'g')")
_TERMINAL = "ARRAY[" + ", ".join(f"'{s}'" for s in TERMINAL_STATES) + "]"

# One statement per table: it redacts up to :n old rows not yet redacted, so it is run in a
# loop (short transactions, SKIP LOCKED) and running it again finds nothing left to do.
PURGE: dict[str, str] = {
    "deliveries": f"""
        WITH b AS (SELECT id FROM deliveries WHERE created_at < :cutoff
                   AND state = ANY({_TERMINAL})
                   AND (recipient IS NOT NULL OR subject IS NOT NULL OR body IS NOT NULL)
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE deliveries d SET recipient = NULL, subject = NULL, body = NULL,
               last_error = {_SCRUB.format(col="d.last_error")}
        FROM b WHERE d.id = b.id""",
    "delivery_attempts": """
        WITH b AS (SELECT id FROM delivery_attempts WHERE started_at < :cutoff
                   AND error_message IS NOT NULL LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE delivery_attempts a SET error_message = NULL FROM b WHERE a.id = b.id""",
    # the sandbox provider's copies of what it "sent": deleted, nothing in them is needed
    "sandbox_messages": """
        WITH b AS (SELECT id FROM sandbox_messages WHERE received_at < :cutoff
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        DELETE FROM sandbox_messages m USING b WHERE m.id = b.id""",
    "events": """
        WITH b AS (SELECT id FROM events WHERE received_at < :cutoff
                   AND (payload -> 'customer') ?| ARRAY['name', 'email', 'phone']
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE events e SET payload = jsonb_set(e.payload, '{customer}',
               (e.payload -> 'customer') - 'name' - 'email' - 'phone')
        FROM b WHERE e.id = b.id""",
    "rejected_events": f"""
        WITH b AS (SELECT id FROM rejected_events WHERE received_at < :cutoff
                   AND payload IS DISTINCT FROM '{REDACTED_JSON}'::jsonb
                   LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE rejected_events r SET payload = '{REDACTED_JSON}'::jsonb FROM b WHERE r.id = b.id""",
    "inbox_items": f"""
        WITH b AS (SELECT id FROM inbox_items WHERE created_at < :cutoff
                   AND customer_id <> '{ERASED}' LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE inbox_items i SET customer_id = '{ERASED}', title = NULL, body = '', cta_url = NULL
        FROM b WHERE i.id = b.id""",
}


def _rowcount(result: Any) -> int:
    """Rows an UPDATE touched (a ``CursorResult``; typed ``Result`` by ``Session.execute``)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _table_exists(session: Session, name: str) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar())


def purge_expired(session_factory: SessionFactory, retention_days: int, *,
                  now: datetime | None = None, batch_size: int = BATCH_SIZE,
                  on_progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Redact personal data older than ``retention_days``; returns rows redacted per table.
    ``on_progress(table, rows)`` is called after each batch (the command's progress bar)."""
    if retention_days <= 0:
        return {}
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    counts: dict[str, int] = {}
    for table, sql in PURGE.items():
        with session_factory() as s:
            if not _table_exists(s, table):
                continue
        total = 0
        while True:
            with session_factory() as s:
                n = _rowcount(s.execute(text(sql), {"cutoff": cutoff, "n": batch_size}))
            total += n
            if on_progress is not None:
                on_progress(table, n)
            if n < batch_size:
                break
        counts[table] = total
    return counts


def erase_customer(session: Session, tenant: str, customer_id: str) -> dict[str, Any]:
    """Remove one customer's personal data (within ``session``'s transaction).

    Their waiting or in-flight deliveries are cancelled (``skipped``, reason ``erased``);
    every row stays, anonymised, so KPIs keep their counts. Idempotent.
    """
    tid = find_tenant_id(session, tenant)
    out: dict[str, Any] = {"tenant": tenant, "tenant_found": tid is not None}
    if tid is None:
        return out
    p = {"tid": tid, "cid": customer_id, "slug": tenant}
    rpks = [r[0] for r in session.execute(text(
        "SELECT id FROM returns WHERE tenant_id = :tid AND customer_id = :cid"), p)]
    eids = [r[0] for r in session.execute(text(
        "SELECT id FROM events WHERE tenant_id = :tid AND (payload -> 'customer' ->> 'id' = :cid "
        "OR return_pk = ANY(:rpks))"), {**p, "rpks": rpks})]
    dids = [r[0] for r in session.execute(text(
        "SELECT id FROM deliveries WHERE event_pk = ANY(:e) ORDER BY id FOR UPDATE"), {"e": eids})]

    def run(sql: str, **params: Any) -> int:
        return _rowcount(session.execute(text(sql), {**p, **params}))

    out["events"] = run(
        "UPDATE events SET payload = payload || jsonb_build_object('customer', "
        "jsonb_build_object('id', CAST(:erased AS text)), 'data', '{}'::jsonb) "
        "WHERE id = ANY(:e)", e=eids, erased=ERASED)
    out["deliveries_cancelled"] = run(
        "UPDATE deliveries SET state = 'skipped', skip_reason = 'erased', next_attempt_at = NULL, "
        "claim_token = NULL, lease_until = NULL, updated_at = now() "
        f"WHERE id = ANY(:d) AND NOT (state = ANY({_TERMINAL}))", d=dids)
    out["deliveries"] = run(
        "UPDATE deliveries SET recipient = NULL, subject = NULL, body = NULL, "
        f"last_error = {_SCRUB.format(col='last_error')} WHERE id = ANY(:d)", d=dids)
    out["delivery_attempts"] = run(
        "UPDATE delivery_attempts SET error_message = NULL WHERE delivery_id = ANY(:d) "
        "AND error_message IS NOT NULL", d=dids)
    out["sandbox_messages"] = run(
        "UPDATE sandbox_messages SET recipient = NULL, subject = NULL, body = '', html = NULL "
        "WHERE delivery_id = ANY(:d)", d=dids)
    out["returns"] = run("UPDATE returns SET customer_id = NULL WHERE id = ANY(:r)", r=rpks)
    out["rejected_events"] = run(
        f"UPDATE rejected_events SET payload = '{REDACTED_JSON}'::jsonb WHERE tenant = :slug "
        "AND jsonb_typeof(payload) = 'object' AND payload -> 'customer' ->> 'id' = :cid")
    out["inbox_items"] = run(
        f"UPDATE inbox_items SET customer_id = '{ERASED}', title = NULL, body = '', cta_url = NULL "
        "WHERE tenant_id = :tid AND customer_id = :cid") if _table_exists(session, "inbox_items") \
        else 0
    return out
