"""RSN_INGEST_INLINE_CHANNELS: an ingest task delivers the in-app notifications of its
events itself, right after its commit, when its worker also consumes the ``inapp`` queue;
otherwise (a worker started for other queues, or the setting empty) it sends the deliver
message as before. Real Redis and PostgreSQL; the task body runs in this process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import text

from return_notify.config.celery import DELIVER_TASK
from return_notify.config.settings import reset_settings
from return_notify.storage.db import session_scope
from return_notify.workers.drain import Drainer
from tests.helpers import event

pytestmark = pytest.mark.integration


@pytest.fixture
def r(svc: Any) -> Iterator[Any]:
    client = redis.Redis.from_url(svc.broker_url)
    yield client
    client.close()


@pytest.fixture
def app(svc: Any) -> Iterator[Any]:
    from return_notify.workers.app import app as celery_app

    yield celery_app
    celery_app.amqp.queues._consume_from = None  # every queue again, for the next test


def _waiting(r: Any, svc: Any, queue: str) -> list[list[int]]:
    """The delivery ids of the deliver messages waiting in ``queue``."""
    d = Drainer(r, queue, DELIVER_TASK, prefix=svc.redis_key_prefix)
    taken = d.take(1000)
    d.restore(taken)
    return [m.args[1] for m in taken]


def _states(ids: list[int]) -> dict[int, str]:
    with session_scope() as s:
        return dict(s.execute(text("SELECT id, state FROM deliveries WHERE id = ANY(:ids)"),
                              {"ids": ids}).tuples().all())


def _ingest(ev: dict[str, Any]) -> dict[str, Any]:
    from return_notify.tasks.ingest import ingest

    return ingest.run(ev)


def _inapp_ids(ev: dict[str, Any]) -> list[int]:
    with session_scope() as s:
        return list(s.execute(text(
            "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_pk "
            "WHERE e.event_id = :e AND d.channel = 'inapp'"), {"e": ev["event_id"]}).scalars())


def _assert_left_to_the_queue(r: Any, svc: Any, ev: dict[str, Any]) -> None:
    """The event's in-app delivery is still pending, with its deliver message waiting."""
    inapp = _inapp_ids(ev)
    assert inapp in _waiting(r, svc, "inapp")
    assert _states(inapp) == {inapp[0]: "pending"}


def test_a_worker_that_consumes_inapp_delivers_it_inline_and_queues_the_others(
        svc: Any, app: Any, r: Any) -> None:
    # given: a worker consuming every queue (the default) and an event for three channels
    ev = event("label_created", data={"label_url": "https://labels.example.com/1.pdf"})
    before = {q: _waiting(r, svc, q) for q in ("email", "sms", "inapp")}

    # when
    summary = _ingest(ev)

    # then: the in-app notification is sent by the ingest task itself, with no message
    # for it; email and SMS each got their deliver message
    inapp = _inapp_ids(ev)
    assert len(inapp) == 1
    assert summary["inline_inapp"] == {"claimed": 1, "sent": 1}
    assert _states(inapp) == {inapp[0]: "sent"}
    after = {q: _waiting(r, svc, q) for q in ("email", "sms", "inapp")}
    assert after["inapp"] == before["inapp"]
    assert len(after["email"]) == len(before["email"]) + 1
    assert len(after["sms"]) == len(before["sms"]) + 1
    with session_scope() as s:
        items = s.execute(text("SELECT count(*) FROM inbox_items WHERE delivery_id = :d"),
                          {"d": inapp[0]}).scalar_one()
    assert items == 1


def test_a_worker_started_without_the_inapp_queue_leaves_it_to_the_inapp_workers(
        svc: Any, app: Any, r: Any) -> None:
    # given: an ingest-only worker (-Q events)
    app.amqp.queues.select(["events"])
    ev = event("label_created", data={"label_url": "https://labels.example.com/2.pdf"})

    # when
    summary = _ingest(ev)

    # then: a deliver message waits in the inapp queue; the row is still pending
    assert "inline_inapp" not in summary
    _assert_left_to_the_queue(r, svc, ev)


def test_an_empty_setting_turns_inline_delivery_off(
        svc: Any, app: Any, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSN_INGEST_INLINE_CHANNELS", "")
    reset_settings()
    try:
        ev = event("label_created", data={"label_url": "https://labels.example.com/3.pdf"})
        summary = _ingest(ev)
    finally:
        monkeypatch.delenv("RSN_INGEST_INLINE_CHANNELS")
        reset_settings()

    assert "inline_inapp" not in summary
    _assert_left_to_the_queue(r, svc, ev)


def test_an_inline_delivery_that_fails_goes_to_the_queue_instead(
        svc: Any, app: Any, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the in-app store fails for this delivery (the database refuses the claim)
    import return_notify.tasks.deliver as deliver_mod

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("inbox unavailable")

    monkeypatch.setattr(deliver_mod, "deliver_batch", broken)
    queued: list[tuple[dict[str, list[int]], set[int] | None]] = []
    real_enqueue = deliver_mod.enqueue_deliveries

    def spy(by_channel: dict[str, list[int]], **kw: Any) -> int:
        queued.append((by_channel, kw.get("urgent")))
        return real_enqueue(by_channel, **kw)

    monkeypatch.setattr(deliver_mod, "enqueue_deliveries", spy)
    ev = event("label_created", data={"label_url": "https://labels.example.com/4.pdf"})

    # when
    summary = _ingest(ev)

    # then: the event is ingested all the same and its in-app delivery waits in the queue,
    # at the urgent priority a label's notification has (transactional)
    assert summary["accepted"] == 1 and summary["inline_inapp"] is None
    _assert_left_to_the_queue(r, svc, ev)
    inapp = _inapp_ids(ev)
    assert queued == [({"inapp": inapp}, queued[0][1])]
    assert queued[0][1] is not None and set(inapp) <= queued[0][1]
