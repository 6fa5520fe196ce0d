"""RSN_INGEST_INLINE_CHANNELS: an ingest task delivers the notifications of its events
itself, right after its commit, when its worker also consumes the channel's queue (email
and SMS only while the batch is small, RSN_INGEST_INLINE_MAX); otherwise (a worker started
for other queues, a backlog's large batch, or the setting empty) it sends the deliver
message as before. Real Redis and PostgreSQL; the task body runs in this process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.celery import DELIVER_TASK
from return_notify.config.settings import reset_settings
from return_notify.storage.db import session_scope
from return_notify.workers.drain import Drainer
from tests.helpers import event

pytestmark = pytest.mark.integration


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


def _ids(ev: dict[str, Any], channel: str = "inapp") -> list[int]:
    with session_scope() as s:
        return list(s.execute(text(
            "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_pk "
            "WHERE e.event_id = :e AND d.channel = :c"), {"e": ev["event_id"], "c": channel}
        ).scalars())


def _inapp_ids(ev: dict[str, Any]) -> list[int]:
    return _ids(ev, "inapp")


def _assert_left_to_the_queue(r: Any, svc: Any, ev: dict[str, Any]) -> None:
    """The event's in-app delivery is still pending, with its deliver message waiting."""
    inapp = _inapp_ids(ev)
    assert inapp in _waiting(r, svc, "inapp")
    assert _states(inapp) == {inapp[0]: "pending"}


def test_a_worker_that_consumes_every_queue_delivers_a_lone_event_inline(
        svc: Any, app: Any, r: Any) -> None:
    # given: a worker consuming every queue (the default) and an event for three channels
    ev = event("label_created", data={"label_url": "https://labels.example.com/1.pdf"})
    before = {q: _waiting(r, svc, q) for q in ("email", "sms", "inapp")}

    # when
    summary = _ingest(ev)

    # then: all three notifications are sent by the ingest task itself, with no deliver
    # message for any of them
    for channel in ("inapp", "email", "sms"):
        ids = _ids(ev, channel)
        assert len(ids) == 1, channel
        assert summary[f"inline_{channel}"] == {"claimed": 1, "sent": 1}
        assert _states(ids) == {ids[0]: "sent"}
    after = {q: _waiting(r, svc, q) for q in ("email", "sms", "inapp")}
    assert after == before
    with session_scope() as s:
        items = s.execute(text("SELECT count(*) FROM inbox_items WHERE delivery_id = :d"),
                          {"d": _inapp_ids(ev)[0]}).scalar_one()
        calls = s.execute(text(
            "SELECT count(*) FROM delivery_attempts WHERE delivery_id = ANY(:ids)"),
            {"ids": _ids(ev, "email") + _ids(ev, "sms")}).scalar_one()
    assert items == 1
    assert calls == 2  # one provider call each, recorded as usual


def test_a_batch_over_the_inline_bound_queues_its_provider_channels(
        svc: Any, app: Any, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a bound of 2 deliveries per provider channel and a batch of 3 events (a backlog)
    monkeypatch.setenv("RSN_INGEST_INLINE_MAX", "2")
    reset_settings()
    evs = [event("label_created", data={"label_url": f"https://labels.example.com/b{i}.pdf"})
           for i in range(3)]
    before = {q: _waiting(r, svc, q) for q in ("email", "sms")}
    try:
        from return_notify.tasks.ingest import ingest

        # when
        summary = ingest.run(evs)
    finally:
        monkeypatch.delenv("RSN_INGEST_INLINE_MAX")
        reset_settings()

    # then: in-app (no provider call) still goes inline; email and SMS wait in their queues
    # as deliver messages, every id pending, none sent
    assert summary["inline_inapp"] == {"claimed": 3, "sent": 3}
    assert "inline_email" not in summary and "inline_sms" not in summary
    for channel in ("email", "sms"):
        ids = sorted(i for ev in evs for i in _ids(ev, channel))
        new = [m for m in _waiting(r, svc, channel) if m not in before[channel]]
        assert sorted(i for m in new for i in m) == ids
        assert set(_states(ids).values()) == {"pending"}


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
    # given: every inline delivery fails (the database refuses the claim)
    import return_notify.tasks.deliver as deliver_mod

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("claim refused")

    monkeypatch.setattr(deliver_mod, "deliver_channels", broken)
    queued: list[tuple[dict[str, list[int]], set[int] | None]] = []
    real_enqueue = deliver_mod.enqueue_deliveries

    def spy(by_channel: dict[str, list[int]], **kw: Any) -> int:
        queued.append((by_channel, kw.get("urgent")))
        return real_enqueue(by_channel, **kw)

    monkeypatch.setattr(deliver_mod, "enqueue_deliveries", spy)
    ev = event("label_created", data={"label_url": "https://labels.example.com/4.pdf"})

    # when
    summary = _ingest(ev)

    # then: the event is ingested all the same and each delivery waits in its queue, at
    # the urgent priority a label's notification has (transactional)
    assert summary["accepted"] == 1
    assert all(summary[f"inline_{ch}"] is None for ch in ("inapp", "email", "sms"))
    _assert_left_to_the_queue(r, svc, ev)
    ids = {ch: _ids(ev, ch) for ch in ("inapp", "email", "sms")}
    assert sorted(next(iter(q[0])) for q in queued) == ["email", "inapp", "sms"]
    for by_channel, urgent in queued:
        (channel, queued_ids), = by_channel.items()
        assert queued_ids == ids[channel]
        assert urgent is not None and set(queued_ids) <= urgent
        assert set(_states(queued_ids).values()) == {"pending"}


def test_one_inline_channel_failing_sends_only_that_one_to_the_queue(
        svc: Any, app: Any, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the SMS adapter raises (a bug, not a provider answer); email and in-app work
    import return_notify.tasks.deliver as deliver_mod
    from return_notify.channels.sandbox import SandboxChannel
    from return_notify.storage.db import get_engine

    class Broken(SandboxChannel):
        def send_many(self, messages: Any) -> Any:
            raise RuntimeError("sms adapter bug")

    real_get_channel = deliver_mod.get_channel
    monkeypatch.setattr(deliver_mod, "get_channel",
                        lambda ch: Broken("sms", engine=get_engine()) if ch == "sms"
                        else real_get_channel(ch))
    ev = event("label_created", data={"label_url": "https://labels.example.com/5.pdf"})
    before = _waiting(r, svc, "sms")

    # when
    summary = _ingest(ev)

    # then: email and in-app went out inline; the SMS delivery got its deliver message
    # (its row is held by the claim's lease until then: that message claims it once the
    # lease ends, or the sweeper does)
    assert summary["inline_email"] == {"claimed": 1, "sent": 1}
    assert summary["inline_inapp"] == {"claimed": 1, "sent": 1}
    assert summary["inline_sms"] is None
    sms = _ids(ev, "sms")
    assert [m for m in _waiting(r, svc, "sms") if m not in before] == [sms]
    assert _states(sms) == {sms[0]: "sending"}
