"""Redis over TLS (``rediss://``): the certificate is verified by every client (redis-py's
side clients and Celery's broker connection alike), and the pipeline runs end to end."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from sqlalchemy import text

from return_notify.config.settings import Settings
from return_notify.devtools.processes import start_worker
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from return_notify.storage.redis import redis_client
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration


def test_side_clients_verify_the_servers_certificate(tls_redis: Any) -> None:
    # a CA that signed the certificate: connected over TLS
    ok = redis_client(Settings(broker_url=tls_redis.url()))
    assert ok.ping() and ok.connection_pool.connection_class.__name__ == "SSLConnection"
    # another CA: refused, not connected without verification
    bad = redis_client(Settings(broker_url=tls_redis.url(tls_redis.other_ca)))
    with pytest.raises(redis.ConnectionError, match="(?i)certificate verify failed"):
        bad.ping()


def test_celery_refuses_a_certificate_it_cannot_verify(tls_redis: Any) -> None:
    # a bare rediss:// URL: kombu on its own would connect without verifying (CERT_NONE);
    # the server's test CA is not among the system's, so verification must fail
    from celery import Celery

    from return_notify.config.celery import celery_config

    bare = f"rediss://127.0.0.1:{tls_redis.port}/0"
    app = Celery("tls-check", set_as_current=False)
    app.conf.update(celery_config(Settings(broker_url=bare)))
    with pytest.raises(Exception, match="(?i)certificate verify failed"), \
            app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)


def test_an_event_goes_through_a_worker_over_tls(services: Any, svc: Any, tls_redis: Any,
                                                 tmp_path: Any) -> None:
    prefix = f"rsn-tls-{uid()}:"
    worker = start_worker(services.env(RSN_BROKER_URL=tls_redis.url(),
                                       RSN_REDIS_KEY_PREFIX=prefix),
                          queues="events,email,sms,inapp", concurrency=1, name="tls",
                          logdir=str(tmp_path))
    try:
        ev = event("refund_processed", tenant=uid("t-tls-"))
        publish(ev, settings=Settings(broker_url=tls_redis.url(), redis_key_prefix=prefix))

        def sent() -> int:
            with session_scope() as s:
                return int(s.execute(text(
                    "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_pk "
                    "WHERE e.event_id = :e AND d.state = 'sent'"),
                    {"e": ev["event_id"]}).scalar_one())

        wait_until(lambda: sent() == 3, timeout_s=60, what="the event's three deliveries sent")
    finally:
        worker.stop(20)
