"""The drain caps count items, not messages, on a real Redis: an ingest task drains up to
``RSN_INGEST_DRAIN_EVENTS`` events and a deliver task up to ``RSN_DELIVER_DRAIN_IDS`` ids,
whatever the messages hold (one event each, or a producer's batch of 200), and ends within
one message of the cap. Counting messages as items drained 6,600 events for a cap of 1,000
when messages held 200."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from return_notify.config.celery import DELIVER_TASK, INGEST_TASK
from return_notify.config.settings import reset_settings
from return_notify.tasks import deliver as deliver_task
from return_notify.tasks import ingest as ingest_task
from return_notify.workers.drain import Drainer, drainer, reset_drainers, step_for
from tests.helpers import uid

pytestmark = pytest.mark.integration


@pytest.fixture
def app(svc: Any) -> Any:
    from return_notify.workers.app import app as celery_app

    return celery_app


@pytest.fixture
def queue(svc: Any, r: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A queue of its own (nothing else consumes it), the ingest task's for this test."""
    name = uid("drain-cap-")
    monkeypatch.setattr(ingest_task, "EVENTS_QUEUE", name)
    yield name
    for task in (INGEST_TASK, DELIVER_TASK):
        d = Drainer(r, name, task, prefix=svc.redis_key_prefix)
        r.delete(*d.list_keys)
    reset_drainers()


def _events(app: Any, queue: str, sizes: list[int]) -> None:
    for n in sizes:
        app.send_task(INGEST_TASK, args=[[{"event_id": uid("e-")} for _ in range(n)]],
                      queue=queue, routing_key=queue)


def _drained_events(drained: list[Any]) -> int:
    return sum(len(ingest_task._events_of(m)) for m in drained)


@pytest.mark.parametrize(("cap", "own", "sizes", "expected"), [
    # the producer's batches of 200: four more messages fill the cap exactly
    (1000, 200, [200] * 40, 800),
    # single publishes: one event per message, up to the cap
    (25, 1, [1] * 60, 24),
    # messages that do not divide the cap: the batch ends within one message past it
    (1000, 300, [300] * 10, 900),
])
def test_an_ingest_task_drains_up_to_its_event_cap(
        app: Any, queue: str, monkeypatch: pytest.MonkeyPatch,
        cap: int, own: int, sizes: list[int], expected: int) -> None:
    # given: messages waiting in the queue, and the event cap
    monkeypatch.setenv("RSN_INGEST_DRAIN_EVENTS", str(cap))
    reset_settings()
    _events(app, queue, sizes)

    # when: a task holding `own` events drains
    drained = ingest_task._drain(own)
    try:
        # then: the events it holds reach the cap, and pass it by less than one message
        assert _drained_events(drained) == expected
        total = own + _drained_events(drained)
        assert cap <= total < cap + max(sizes)
    finally:
        drainer(queue, INGEST_TASK).ack(drained)
    # the rest is still queued, untouched
    assert drainer(queue, INGEST_TASK).waiting() == len(sizes) - len(drained)


def test_a_deliver_task_drains_up_to_its_id_cap(app: Any, queue: str) -> None:
    # given: ten deliver messages of 200 ids each for a channel (its own queue here)
    channel = queue
    for k in range(10):
        app.send_task(DELIVER_TASK, args=[channel, list(range(k * 200, (k + 1) * 200))],
                      queue=queue, routing_key=queue)

    # when: a task holding a message of 200 ids drains with a cap of 400
    drained = deliver_task._drain(channel, 200, 400)
    try:
        # then: one message more, 400 ids in all
        assert [len(m.args[1]) for m in drained] == [200]
    finally:
        drainer(queue, DELIVER_TASK).ack(drained)
    assert drainer(queue, DELIVER_TASK).waiting() == 9


@pytest.mark.parametrize(("room", "per_message", "most", "expected"), [
    (800, 200.0, 32, 4),     # whole messages that fit
    (100, 200.0, 32, 1),     # less than a message left: one (a message is never split)
    (999, 1.0, 32, 32),      # single events: at most `most` per call to Redis
    (10, 0.0, 32, 10),       # no size seen yet counts as one item per message
])
def test_step_for(room: int, per_message: float, most: int, expected: int) -> None:
    assert step_for(room, per_message, most) == expected


@pytest.mark.timeout(30)
def test_a_deliver_drain_stops_at_a_message_of_another_channel(app: Any, queue: str) -> None:
    # given: at the front of a channel's queue, a deliver message of another channel (given
    # back to the front of the queue each time it is taken), then one of the channel's own
    channel = queue
    app.send_task(DELIVER_TASK, args=["other-channel", [1, 2]], queue=queue, routing_key=queue)
    app.send_task(DELIVER_TASK, args=[channel, [3, 4]], queue=queue, routing_key=queue)

    # when: a task with room for one more message of its size drains
    drained = deliver_task._drain(channel, 2, 4)

    # then: it returns (the foreign message is not taken again and again) and leaves both
    # messages queued for Celery's consumer, the foreign one first
    assert drained == []
    d = drainer(queue, DELIVER_TASK)
    assert d.waiting() == 2
