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


# ------------------------------------------------------------------ one broker setting ---

def test_celery_own_broker_variable_disagreeing_with_rsn_broker_url_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from return_notify.errors import ConfigurationError

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://other:6379/0")
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL .* differs from RSN_BROKER_URL"):
        celery_config(Settings(broker_url="redis://redis:6379/0"))
    # set alone, it would split the system just the same
    with pytest.raises(ConfigurationError, match="one broker setting"):
        celery_config(Settings(broker_url=None))
    # the same value twice is one setting
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://redis:6379/0")
    assert celery_config(Settings(broker_url="redis://redis:6379/0"))["broker_url"] == \
        "redis://redis:6379/0"


def test_passwords_are_masked_in_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from return_notify.config.celery import check_broker
    from return_notify.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        check_broker(Settings(broker_url="redis://:hunter2@a:6379/0"),
                     {"CELERY_BROKER_WRITE_URL": "redis://:s3cret@b:6379/0"})
    assert "hunter2" not in str(info.value) and "s3cret" not in str(info.value)
    assert "CELERY_BROKER_WRITE_URL" in str(info.value)


def test_no_broker_at_all_is_refused_not_amqp_guest() -> None:
    from return_notify.config.celery import require_broker
    from return_notify.errors import ConfigurationError
    from return_notify.workers.app import ReturnNotifyCelery

    with pytest.raises(ConfigurationError, match="RSN_BROKER_URL is not set"):
        require_broker(Settings(broker_url=None), {})
    # a Celery app without a broker URL refuses to connect instead of trying amqp://guest
    app = ReturnNotifyCelery("unset-broker", set_as_current=False)
    app.conf.update(celery_config(Settings(broker_url=None)))
    with pytest.raises(ConfigurationError, match="amqp://guest@localhost"):
        app.connection_for_write()
    with pytest.raises(ConfigurationError):
        app.connection_for_read()


# ------------------------------------------------------------------ Redis URLs -----------

def test_a_sentinel_url_becomes_kombus_form_with_the_master_name_and_sentinel_password() -> None:
    conf = celery_config(Settings(broker_url="sentinel://:pw@s1:26379,s2,[::1]:26380/2",
                                  redis_sentinel_master="rsn-primary",
                                  redis_sentinel_password="sentinel-pw"))
    assert conf["broker_url"] == ("sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26379/2;"
                                  "sentinel://:pw@[::1]:26380/2")
    opts = conf["broker_transport_options"]
    assert opts["master_name"] == "rsn-primary"
    assert opts["sentinel_kwargs"]["password"] == "sentinel-pw"


def test_a_rediss_url_verifies_the_certificate_unless_it_says_otherwise() -> None:
    from return_notify.core.redis_urls import kombu_url

    assert kombu_url("rediss://:p@r:6380/0") == "rediss://:p@r:6380/0?ssl_cert_reqs=required"
    assert kombu_url("rediss://r:6380/0?ssl_cert_reqs=none&ssl_ca_certs=%2Fca.pem") == \
        "rediss://r:6380/0?ssl_cert_reqs=none&ssl_ca_certs=%2Fca.pem"
    assert kombu_url("redis://r:6379/0") == "redis://r:6379/0"


@pytest.mark.parametrize("url", ["amqp://guest@localhost//", "redis-sentinel://x", "r:6379",
                                 "sentinel://", "sentinel://h:port/0", "sentinel://h/zero",
                                 "sentinel://h:26379/0?ssl_cert_reqs=required"])
def test_unusable_redis_urls_are_refused_with_a_reason(url: str) -> None:
    from return_notify.core.redis_urls import kombu_url
    from return_notify.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        kombu_url(url)


def test_kombus_own_sentinel_spelling_is_read_too() -> None:
    from return_notify.core.redis_urls import parse_sentinel

    t = parse_sentinel("sentinel://u:p%40ss@a:1/3;sentinel://u:p%40ss@b:2/3")
    assert t.sentinels == (("a", 1), ("b", 2)) and t.db == 3
    assert (t.username, t.password) == ("u", "p@ss")


# ------------------------------------------------------------------ beat: retention -------

def test_retention_runs_daily_at_the_configured_time_on_its_own_queue_and_limits() -> None:
    from datetime import UTC, datetime

    from return_notify.config.celery import RETENTION_QUEUE, RETENTION_TASK

    conf = celery_config(Settings(broker_url="redis://x", retention_at="02:15",
                                  retention_time_limit_s=1800))
    entry = conf["beat_schedule"]["retention"]
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute) == ({2}, {15})
    # due the next day at 02:15, across a leap day and a year's end: a beat restart neither
    # skips nor repeats the run (a 24 h interval restarted its count with the schedule file)
    for last, now, expect_due, expect_wait_s in (
        (datetime(2028, 2, 29, 2, 15, tzinfo=UTC), datetime(2028, 2, 29, 10, 0, tzinfo=UTC),
         False, 16 * 3600 + 15 * 60),
        (datetime(2028, 2, 29, 2, 15, tzinfo=UTC), datetime(2028, 3, 1, 2, 15, 30, tzinfo=UTC),
         True, None),
        (datetime(2027, 12, 31, 2, 15, tzinfo=UTC), datetime(2027, 12, 31, 23, 0, tzinfo=UTC),
         False, 3 * 3600 + 15 * 60),
    ):
        schedule.nowfun = lambda now=now: now
        due, wait = schedule.is_due(last)
        assert due is expect_due, (last, now)
        if expect_wait_s is not None:
            assert abs(wait - expect_wait_s) < 1, (last, now, wait)
    assert entry["options"]["queue"] == RETENTION_QUEUE
    assert conf["task_routes"][RETENTION_TASK]["queue"] == RETENTION_QUEUE
    limits = conf["task_annotations"][RETENTION_TASK]
    assert (limits["time_limit"], limits["soft_time_limit"], limits["acks_late"]) == \
        (1800, 1740, False)
    assert RETENTION_QUEUE in {q.name for q in conf["task_queues"]}


@pytest.mark.parametrize("at", ["3:30", "24:00", "03:60", "noon"])
def test_a_bad_retention_time_is_refused(at: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="retention_at"):
        Settings(retention_at=at)
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
