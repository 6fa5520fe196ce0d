"""The write-back (``deliver_record.write_outcomes``): fenced by the claim token, and planned
in time linear in the batch (real PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.settings import Settings
from return_notify.pipeline.deliver_record import _WRITE_BACK, Recorder, Row, claim
from return_notify.pipeline.outcome_journal import Parked
from return_notify.storage.db import session_scope
from tests.helpers import uid
from tests.integration.pipeline.test_provider_rate_limits import email_ids

pytestmark = pytest.mark.integration


def _claimed(n: int) -> tuple[str, list[int]]:
    ids = email_ids(n, uid("t-"))
    with session_scope() as s:
        token, rows = claim(s, "email", ids, lease_s=60)
    assert sorted(r.id for r in rows) == sorted(ids)
    return token, ids


def _record(token: str, ids: list[int]) -> None:
    recorder = Recorder(session_scope, token, Settings(_env_file=None),  # type: ignore[call-arg]
                        deadline=float("inf"))
    at = datetime.now(UTC)
    for i in ids:
        recorder.add(Row(id=i, state="sent", provider="sendgrid", pmid=f"m-{i}", body="hi",
                         sent_at=at),
                     {"delivery_id": i, "attempt_no": 1, "started_at": at, "duration_ms": 1.0,
                      "outcome": "sent", "provider": "sendgrid", "provider_message_id": f"m-{i}"})
    recorder.flush()


def _states(ids: list[int]) -> dict[str, int]:
    with session_scope() as s:
        return dict(s.execute(text("SELECT state, count(*) FROM deliveries WHERE id = ANY(:i) "
                                   "GROUP BY state"), {"i": ids}).all())  # type: ignore[arg-type]


def test_only_the_claims_own_token_writes_its_outcomes(svc: Any) -> None:
    token, ids = _claimed(3)
    # a late writer whose claim was superseded changes nothing
    _record("00000000-0000-0000-0000-000000000000", ids)
    assert _states(ids) == {"sending": 3}
    _record(token, ids)
    assert _states(ids) == {"sent": 3}
    with session_scope() as s:
        attempts = s.execute(text("SELECT count(*) FROM delivery_attempts "
                                  "WHERE delivery_id = ANY(:i)"), {"i": ids}).scalar_one()
        pmids = s.execute(text("SELECT provider_message_id FROM deliveries WHERE id = ANY(:i) "
                               "ORDER BY id"), {"i": ids}).scalars().all()
    # the stale writer's attempt rows went in (the calls happened); its states did not
    assert attempts == 6
    assert pmids == [f"m-{i}" for i in sorted(ids)]


def test_the_plan_reads_the_batch_once_not_once_per_row(svc: Any) -> None:
    """The fence used to be a constant filter on ``deliveries``: the planner then expected
    one row there and scanned the whole batch again for each row it found."""
    token, ids = _claimed(64)
    at = datetime.now(UTC)
    entry = Parked({"token": token, "ids": ids, "states": ["sent"] * 64,
                    "next_ats": [None] * 64, "providers": ["sendgrid"] * 64,
                    "pmids": [f"m-{i}" for i in ids], "subjects": [None] * 64,
                    "bodies": [None] * 64, "errs": [None] * 64, "skips": [None] * 64,
                    "throttled": [False] * 64, "sent_ats": [at] * 64}, [], [], [])
    params = {**entry.params, **{f"a_{c}": [] for c in (
        "delivery_id", "attempt_no", "started_at", "duration_ms", "outcome", "provider",
        "provider_message_id", "error_class", "error_code", "error_message")}}
    with session_scope() as s:
        conn = s.connection()
        with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
            # as in a month's partition of real size, where the rows are found by index
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _WRITE_BACK.compiled(conn), params)
            plan = cur.fetchone()[0]
        s.rollback()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    nodes = _nodes(plan[0]["Plan"])
    # the planner expects the batch's rows in deliveries (one row was the old estimate,
    # which made a loop over them the cheapest plan on paper) ...
    scans = [n for n in nodes if n.get("Relation Name", "").startswith("deliveries_")
             and "Scan" in n["Node Type"]]
    assert scans and min(n["Plan Rows"] for n in scans) >= 32, plan
    # ... and reads the batch's values once
    loops = [n["Actual Loops"] for n in nodes if n["Node Type"] == "Function Scan"]
    assert loops and max(loops) == 1, plan


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("Plans", []):
        out += _nodes(child)
    return out
