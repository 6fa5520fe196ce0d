"""Celery configuration invariants: JSON only, late acks, the visibility timeout guarded."""

from __future__ import annotations

import pytest

from return_notify.config.celery import celery_config
from return_notify.config.settings import Settings


def test_celery_config_is_json_only_acks_late_and_guards_the_visibility_timeout() -> None:
    conf = celery_config(Settings(broker_url="redis://x"))
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert {q.name for q in conf["task_queues"]} >= {"events", "email", "sms", "inapp"}
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        celery_config(Settings(broker_url="redis://x", visibility_timeout_s=60))


def test_flower_sees_event_ids_never_the_events() -> None:
    from return_notify.config.celery import DELIVER_TASK, INGEST_TASK, task_argsrepr

    events = [{"event_id": f"ev-{i}", "customer": {"email": "ana@example.com",
                                                   "phone": "+14155550123", "name": "Ana"}}
              for i in range(25)]
    shown = task_argsrepr(INGEST_TASK, [events])
    assert "ev-0" in shown and "ev-19" in shown and "5 more" in shown and "(25)" in shown
    assert "ana@example.com" not in shown and "+1415" not in shown and "Ana" not in shown
    assert task_argsrepr(DELIVER_TASK, ["email", [1, 2, 3]]) == "email, deliveries=[1, 2, 3] (3)"


def test_every_publish_of_this_process_carries_ids_only() -> None:
    # the workers' before_task_publish handler relabels what Celery publishes by itself
    # (a retry re-sends the full arguments with repr(args) by default)
    from return_notify.workers.signals import _before_publish

    headers = {"argsrepr": "[[{'customer': {'email': 'ana@example.com'}}]]", "kwargsrepr": "{}"}
    body = ([[{"event_id": "ev-1", "customer": {"email": "ana@example.com"}}]], {}, {})
    _before_publish(sender="return_notify.ingest", body=body, headers=headers)
    assert headers["argsrepr"] == "events=[ev-1] (1)"
