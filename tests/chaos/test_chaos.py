"""Chaos suite (issue 5): faults under a load of 5,000+ events through real worker and beat
processes, embedded Redis (AOF) and PostgreSQL that the suite restarts, and the local
Twilio/SendGrid servers driven by the real SDKs.

After each fault: every published event is stored (or rejected, for the invalid ones), every
delivery the rules call for exists and is terminal, nothing recorded as sent is missing at
the provider, and duplicate sends are counted exactly from what the providers accepted.
``pytest -m chaos -s`` prints each scenario's numbers; ``python -m return_notify.devtools.chaos``
runs the same scenarios outside pytest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
import redis

from return_notify.devtools.chaos import ChaosError, run_scenario
from return_notify.devtools.chaos_report import ChaosReport
from return_notify.devtools.embedded import EmbeddedServers, embedded_available

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(480)]

EVENTS = 5000
SCENARIO_TIMEOUT_S = 420.0  # a loaded shared machine: the checks, not the wait, decide
#: provider calls a pool process may have in flight or unrecorded (RSN_PROVIDER_CONCURRENCY)
WINDOW = 16


@pytest.fixture(scope="module")
def chaos_servers() -> Iterator[EmbeddedServers]:
    """Our own Redis and PostgreSQL: the suite restarts them, so never the machine's."""
    ok, reason = embedded_available()
    if not ok:  # a declared dependency is missing: fail loudly rather than skip
        pytest.fail(f"embedded servers unavailable: {reason}")
    with EmbeddedServers() as servers:
        yield servers


def run(servers: EmbeddedServers, scenario: str, logdir: Path) -> ChaosReport:
    try:
        report = run_scenario(scenario, servers, EVENTS, SCENARIO_TIMEOUT_S, str(logdir))
    except ChaosError as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\n{scenario}: {json.dumps(report.to_json())}")
    return report


def assert_nothing_lost(r: ChaosReport) -> str:
    """The invariants every scenario keeps; returns the report as text for messages."""
    text = json.dumps(r.to_json(), indent=1)
    assert r.events_published >= EVENTS, text
    assert r.events_missing == 0, f"published events neither stored nor rejected\n{text}"
    assert r.events_stored + r.events_rejected == r.unique_events, text
    assert r.non_terminal == 0, f"deliveries not terminal\n{text}"
    assert r.deliveries_missing == 0 and r.deliveries_unexpected == 0, \
        f"deliveries do not match the rules for the stored events\n{text}"
    assert r.recorded_sent_not_received == 0, f"recorded as sent, never received\n{text}"
    assert r.duplicates_inapp == 0, text
    assert r.sent_max_per_delivery == 1, f"the pipeline knowingly sent twice\n{text}"
    assert r.unexplained_duplicates == 0, f"duplicates neither in flight nor ambiguous\n{text}"
    assert r.workers_alive, text
    return text


def test_embedded_restarts_keep_the_port_and_the_data(chaos_servers: EmbeddedServers) -> None:
    def sql(statement: str) -> list[tuple[int, ...]]:
        dsn = chaos_servers.database_url.replace("+psycopg2", "")
        with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []

    # given a queued Redis message (AOF) and a committed PostgreSQL row
    with redis.Redis.from_url(chaos_servers.redis_url, socket_timeout=5) as r:
        r.rpush("chaos-probe", "queued")
    sql("CREATE TABLE chaos_probe (x int); INSERT INTO chaos_probe VALUES (42)")
    before, urls = dict(chaos_servers.pids), (chaos_servers.redis_url, chaos_servers.database_url)
    # when both restart, staying down a moment
    assert chaos_servers.restart_redis(0.5) >= 0.5
    assert chaos_servers.restart_postgres(0.5) >= 0.5
    # then they are new processes on the same URLs, with the data
    assert (chaos_servers.redis_url, chaos_servers.database_url) == urls
    assert chaos_servers.pids["redis"] != before["redis"]
    assert chaos_servers.pids["postgres"] != before["postgres"]
    with redis.Redis.from_url(chaos_servers.redis_url, socket_timeout=5) as r:
        assert r.lpop("chaos-probe") == b"queued"
    assert sql("SELECT x FROM chaos_probe") == [(42,)]
    sql("DROP TABLE chaos_probe")


def test_worker_group_sigkill_mid_run_then_restart(chaos_servers: EmbeddedServers, tmp_path: Path) -> None:
    # given a burst in progress, when the whole worker group is SIGKILLed and restarted
    r = run(chaos_servers, "worker-kill", tmp_path)
    # then only sends in flight at the kill may repeat: claimed, sent, never recorded
    text = assert_nothing_lost(r)
    assert r.in_flight_at_fault > 0, f"the kill hit no batch in flight\n{text}"
    assert r.duplicates <= r.in_flight_at_fault, text
    assert r.duplicates_outside_in_flight == 0, text
    # outcomes are recorded while a batch sends: each of the 2 pool processes repeats at
    # most its provider window (RSN_PROVIDER_CONCURRENCY calls in flight or unrecorded)
    assert r.duplicates <= 2 * WINDOW, f"more resent than the provider windows\n{text}"


def test_redis_restart_mid_run(chaos_servers: EmbeddedServers, tmp_path: Path) -> None:
    r = run(chaos_servers, "redis-restart", tmp_path)
    text = assert_nothing_lost(r)
    assert r.duplicates == 0, (
        f"{r.duplicates} duplicate sends after a Redis restart, all among the "
        f"{r.in_flight_at_fault} deliveries in flight: a batch was killed mid-send "
        f"(worker_cancel_long_running_tasks_on_connection_loss)\n{text}")


def test_postgres_restart_mid_run(chaos_servers: EmbeddedServers, tmp_path: Path) -> None:
    r = run(chaos_servers, "postgres-restart", tmp_path)
    text = assert_nothing_lost(r)
    # outcomes the database could not take are retried, then parked in Redis and written
    # before the next claim: what is sent again is at most the calls still in flight when
    # the outage pushed a batch past its time limit (each pool process's provider window)
    assert r.duplicates_outside_in_flight == 0, text
    assert r.duplicates <= 2 * WINDOW, (
        f"{r.duplicates} duplicate sends after a PostgreSQL restart: more than the calls in "
        f"flight, so recorded outcomes were lost instead of parked\n{text}")


def test_provider_errors_timeouts_and_a_full_outage(chaos_servers: EmbeddedServers, tmp_path: Path) -> None:
    # given 20 % of calls answering 429, 500, 503 or hanging past the client timeout,
    # and both providers refusing connections for 10 s mid-run
    r = run(chaos_servers, "provider-faults", tmp_path)
    text = assert_nothing_lost(r)
    for provider in ("twilio", "sendgrid"):
        issued = r.details[f"{provider}_faults"]
        assert {"rate_limit", "server_error500", "server_error503", "hang"} <= issued.keys(), text
    # then the retry budget outlasts the outage: nothing is given up on
    assert not {"dead", "failed"} & r.states.keys(), text
    # and the only duplicates are calls the provider accepted while the client timed out
    # (or lost the connection): neither SDK has an idempotency key, so a retry resends
    assert r.duplicates <= r.ambiguous_calls, text


def test_provider_429s_throughout_with_a_kill_and_a_redis_restart(
    chaos_servers: EmbeddedServers, tmp_path: Path,
) -> None:
    # given a fifth of all provider calls answered 429 for the whole burst, the worker group
    # SIGKILLed and Redis restarted meanwhile
    r = run(chaos_servers, "rate-limits", tmp_path)
    text = assert_nothing_lost(r)
    issued = sum(r.details["sendgrid_faults"].values()) + sum(r.details["twilio_faults"].values())
    assert issued > 100, text
    # then a provider's rate limit is never a failure: no delivery is dead or failed
    assert not {"dead", "failed"} & r.states.keys(), text
    assert r.duplicates <= 2 * WINDOW, text


def test_worker_holding_unacked_messages_survives_a_redis_outage(
    chaos_servers: EmbeddedServers, tmp_path: Path,
) -> None:
    # the Celery pin (>=5.6.3,<5.7): a 5.7.0 worker exits here with AttributeError 'hostname'
    r = run(chaos_servers, "redis-outage", tmp_path)
    text = assert_nothing_lost(r)
    assert sum(r.details["unacked_before"].values()) > 0, text
    assert r.details["alive_5s_after"] and not r.details["unrecoverable_error_logged"], text
    assert r.duplicates == 0, (
        f"{r.duplicates} duplicate sends after a Redis outage, all among the "
        f"{r.in_flight_at_fault} deliveries in flight: a batch was killed mid-send "
        f"(worker_cancel_long_running_tasks_on_connection_loss)\n{text}")


def test_warm_shutdown_mid_run_loses_nothing(chaos_servers: EmbeddedServers, tmp_path: Path) -> None:
    r = run(chaos_servers, "warm-shutdown", tmp_path)
    text = assert_nothing_lost(r)
    assert r.details["warm_exit_code"] == 0, text
    assert r.details["unacked_after_shutdown"] == {}, f"messages left unacked\n{text}"
    assert r.duplicates == 0, text
