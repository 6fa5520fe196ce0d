"""config.broker_client: the broker connections of the worker app and the producer send
every message of a channel through one Redis client object (kombu builds one per message),
on a real Redis; transports other than plain Redis are left alone."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis

from return_notify.config.broker_client import BrokerAMQP
from return_notify.config.celery import NOOP_TASK
from tests.helpers import uid

pytestmark = pytest.mark.integration


def _send(app: Any, queue: str, n: int) -> set[int]:
    """Send ``n`` no-op tasks to ``queue``; the ids of the clients their channel used."""
    used: set[int] = set()
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        for _ in range(n):
            app.send_task(NOOP_TASK, queue=queue, routing_key=queue, producer=producer)
            used.add(id(channel._sending_client))
    return used


def test_the_worker_app_sends_a_channel_s_messages_through_one_client(svc: Any, r: Any) -> None:
    from return_notify.workers.app import app

    queue = uid("q-")
    used = _send(app, queue, 5)
    assert len(used) == 1
    assert r.llen(svc.redis_key_prefix + queue) == 5  # all sent, with the key prefix
    with app.producer_or_acquire() as producer:  # the pooled channel keeps its client
        client = producer.channel._sending_client
        assert isinstance(client, redis.Redis)
        assert client.connection_pool is producer.channel.pool
    r.delete(svc.redis_key_prefix + queue)


def test_a_new_connection_pool_gets_a_new_client(svc: Any, r: Any) -> None:
    from return_notify.workers.app import app

    queue = uid("q-")
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        app.send_task(NOOP_TASK, queue=queue, routing_key=queue, producer=producer)
        first = channel._sending_client
        channel._disconnect_pools()  # what kombu does when the connection is lost
        app.send_task(NOOP_TASK, queue=queue, routing_key=queue, producer=producer)
        assert channel._sending_client is not first
        assert channel._sending_client.connection_pool is channel.pool
    assert r.llen(svc.redis_key_prefix + queue) == 2
    r.delete(svc.redis_key_prefix + queue)


def test_the_producer_publishes_through_the_same_transport(svc: Any, r: Any) -> None:
    from return_notify.config.settings import get_settings
    from return_notify.producer import _app, publish
    from tests.helpers import event

    app = _app(get_settings())
    assert isinstance(app.amqp, BrokerAMQP)
    before = r.llen(svc.redis_key_prefix + "events")
    for _ in range(3):
        publish(event("return_initiated", tenant=uid("t-")))
    assert r.llen(svc.redis_key_prefix + "events") == before + 3
    with app.producer_or_acquire() as producer:
        assert producer.channel._sending_client is not None


def test_other_transports_are_left_as_they_are() -> None:
    from celery import Celery

    app = Celery("t", set_as_current=False, amqp=BrokerAMQP)
    sentinel = app.connection_for_write("sentinel://127.0.0.1:26379/0")
    assert sentinel.get_transport_cls() is kombu_redis.SentinelTransport
    memory = app.connection_for_write("memory://")
    assert not issubclass(memory.get_transport_cls(), kombu_redis.Transport)
    plain = app.connection_for_write("redis://127.0.0.1:6379/0")
    assert issubclass(plain.get_transport_cls(), kombu_redis.Transport)
    assert plain.get_transport_cls() is not kombu_redis.Transport
    assert plain.as_uri() == "redis://127.0.0.1:6379/0"
