"""`dlq replay` in short batches (one transaction and one enqueue each), every dead
delivery replayed once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from return_notify.pipeline.ingest import ingest_batch
from return_notify.storage.db import session_scope
from tests.helpers import event, uid

pytestmark = pytest.mark.integration


def test_dlq_replay_goes_in_batches_and_replays_each_dead_delivery_once(
    svc: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: seven dead email deliveries of one tenant
    from return_notify.cli import deliveries
    from return_notify.cli.main import app

    tenant = uid("t-")
    with session_scope() as s:
        result = ingest_batch(s, [event("label_created", tenant=tenant, phone=None)
                                  for _ in range(7)])
    ids = sorted(result.deliveries["email"])
    assert len(ids) == 7
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET state = 'dead', attempts = 6 WHERE id = ANY(:i)"),
                  {"i": ids})
    calls: list[int] = []
    original = deliveries.__dict__.get("REPLAY_BATCH")
    monkeypatch.setattr(deliveries, "REPLAY_BATCH", 3)
    from return_notify.workers import app as workers_app

    real = workers_app.enqueue_deliveries
    monkeypatch.setattr(workers_app, "enqueue_deliveries",
                        lambda by_channel, **kw: calls.append(sum(map(len, by_channel.values())))
                        or real(by_channel, **kw))
    # when
    out = CliRunner().invoke(app, ["dlq", "replay", "--tenant", tenant, "--json"])
    # then: 3 + 3 + 1, each batch enqueued after its own commit; all pending again
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["replayed"] == 7 and sorted(body["ids"]["email"]) == ids
    assert calls == [3, 3, 1] and original == 1000
    with session_scope() as s:
        states = s.execute(text("SELECT DISTINCT state FROM deliveries WHERE id = ANY(:i)"),
                           {"i": ids}).scalars().all()
    assert states == ["pending"]
