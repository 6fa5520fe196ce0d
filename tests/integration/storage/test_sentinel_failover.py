"""Redis high availability: the whole pipeline on a real Sentinel set-up (a primary, a replica
and three Sentinels, ``redis-server`` processes started here), the primary killed with
SIGKILL in the middle of a burst. Real worker and beat processes, every Redis client through
``sentinel://``: nothing lost, nothing stuck, duplicate sends counted and reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.rules import channels_for
from return_notify.config.settings import Settings
from return_notify.devtools.processes import start_beat, start_worker
from return_notify.devtools.redis_sentinel import MASTER_NAME, SentinelSetup
from return_notify.errors import PublishError
from return_notify.events import Milestone
from return_notify.producer import publish_many
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BATCHES, PER_BATCH = 60, 5
TERMINAL = ("sent", "delivered", "failed", "dead", "suppressed", "skipped")


def _count(sql: str, **params: Any) -> int:
    with session_scope() as s:
        return int(s.execute(text(sql), params).scalar_one())


class Producer(threading.Thread):
    """Publishes the burst at a steady pace; a batch the broker refused (PublishError, the
    primary gone) is sent again, as the producer's documentation says is safe."""

    def __init__(self, batches: list[list[dict[str, Any]]], settings: Settings) -> None:
        super().__init__(daemon=True)
        self.batches, self.settings = batches, settings
        self.published: list[str] = []
        self.refused = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for batch in self.batches:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        publish_many(batch, settings=self.settings)
                        break
                    except PublishError:
                        self.refused += 1
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.3)
                self.published += [e["event_id"] for e in batch]
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_killing_the_primary_mid_burst_loses_nothing_and_leaves_nothing_stuck(
    services: Any, svc: Any, sentinel: SentinelSetup, tmp_path: Any,
    measured: Callable[[dict[str, Any]], None],
) -> None:
    # given: workers, beat and a producer that know Redis only through the Sentinels; short
    # leases and limits so the sweeper recovers a lost message within seconds
    prefix = f"rsn-sentinel-{uid()}:"
    env = services.env(
        RSN_BROKER_URL=sentinel.url, RSN_REDIS_SENTINEL_MASTER=MASTER_NAME,
        RSN_REDIS_KEY_PREFIX=prefix, RSN_SANDBOX_LATENCY_MS="30", RSN_TASK_TIME_LIMIT_S="12",
        RSN_TASK_SOFT_TIME_LIMIT_S="10", RSN_VISIBILITY_TIMEOUT_S="20", RSN_MAX_COUNTDOWN_S="2",
        RSN_LEASE_S="15", RSN_SWEEP_INTERVAL_S="2")
    worker = start_worker(env, queues="events,email,sms,inapp,maintenance", concurrency=3,
                          name="sentinel", logdir=str(tmp_path))
    beat = start_beat(env, logdir=str(tmp_path))
    tenant = uid("t-sentinel-")
    batches = [[event("label_created", tenant=tenant) for _ in range(PER_BATCH)]
               for _ in range(BATCHES)]
    producer = Producer(batches, Settings(broker_url=sentinel.url, redis_key_prefix=prefix,
                                          redis_sentinel_master=MASTER_NAME))
    expected_per_event = len(channels_for(Milestone("label_created"), True, True))
    t0 = time.monotonic()
    try:
        # when: a third of the burst is out and deliveries are going out, the primary dies
        producer.start()
        wait_until(lambda: len(producer.published) >= BATCHES * PER_BATCH // 3 and _count(
            "SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
            "WHERE t.slug = :t AND d.state = 'sent'", t=tenant) > 0,
            timeout_s=60, what="the burst under way")
        old_port = sentinel.master_port()
        assert old_port is not None
        published_at_fault = len(producer.published)
        with session_scope() as s:
            fault_at = s.execute(text("SELECT now()")).scalar_one()
        killed = sentinel.kill_primary()
        failover_s = sentinel.wait_for_failover(old_port)
        producer.join(120)
        assert producer.error is None, f"the producer gave up: {producer.error!r}"

        # then: every published event stored, every delivery terminal
        def settled() -> bool:
            stored = _count("SELECT count(*) FROM events e JOIN tenants t ON t.id = e.tenant_id "
                            "WHERE t.slug = :t", t=tenant)
            open_ = _count("SELECT count(*) FROM deliveries d JOIN tenants t ON "
                           "t.id = d.tenant_id WHERE t.slug = :t AND NOT (d.state = ANY(:s))",
                           t=tenant, s=list(TERMINAL))
            made = _count("SELECT count(*) FROM deliveries d JOIN tenants t ON "
                          "t.id = d.tenant_id WHERE t.slug = :t", t=tenant)
            return stored == len(producer.published) and open_ == 0 and \
                made == stored * expected_per_event

        try:
            wait_until(settled, timeout_s=90, interval_s=0.5, what="every event stored and "
                       "every delivery terminal")
        finally:
            report = _account(tenant, producer, expected_per_event)
            report["sent_after_fault"] = _count(
                "SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                "WHERE t.slug = :t AND d.sent_at > :f", t=tenant, f=fault_at)
            report.update(killed=killed, failover_s=round(failover_s, 1),
                          published_at_fault=published_at_fault,
                          elapsed_s=round(time.monotonic() - t0, 1),
                          worker_alive=worker.popen.poll() is None)
            measured(report)
        assert report["lost_events"] == 0, report
        assert report["stuck_deliveries"] == 0 and report["missing_deliveries"] == 0, report
        assert report["events_published"] == BATCHES * PER_BATCH
        assert report["worker_alive"], worker.log_tail()
        # the workers carried on through the new primary (not just finished what they held)
        assert report["sent_after_fault"] > 0, report
        # the new primary took over for every client: it holds the queues now
        assert sentinel.master_port() != old_port
    finally:
        beat.stop(10)
        worker.stop(30)


def _account(tenant: str, producer: Producer, per_event: int) -> dict[str, Any]:
    with session_scope() as s:
        stored = set(s.execute(text(
            "SELECT e.event_id FROM events e JOIN tenants t ON t.id = e.tenant_id "
            "WHERE t.slug = :t"), {"t": tenant}).scalars())
        states = dict(s.execute(text(
            "SELECT d.state, count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
            "WHERE t.slug = :t GROUP BY 1"), {"t": tenant}).all())
        duplicate_sends = int(s.execute(text(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM sandbox_messages m "
            "JOIN deliveries d ON d.id = m.delivery_id JOIN tenants t ON t.id = d.tenant_id "
            "WHERE t.slug = :t GROUP BY m.delivery_id) x"), {"t": tenant}).scalar_one())
        duplicate_inbox = int(s.execute(text(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM inbox_items i "
            "JOIN deliveries d ON d.id = i.delivery_id JOIN tenants t ON t.id = d.tenant_id "
            "WHERE t.slug = :t GROUP BY i.delivery_id) x"), {"t": tenant}).scalar_one())
    made = sum(states.values())
    return {
        "events_published": len(producer.published), "events_stored": len(stored),
        "lost_events": len(set(producer.published) - stored),
        "publishes_refused_then_resent": producer.refused,
        "deliveries": made, "missing_deliveries": max(0, len(stored) * per_event - made),
        "stuck_deliveries": sum(n for st, n in states.items() if st not in TERMINAL),
        "states": states, "duplicate_sends": duplicate_sends,
        "duplicate_inbox_items": duplicate_inbox,
    }
