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
