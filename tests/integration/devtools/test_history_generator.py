"""The history generator on real PostgreSQL: about the rows asked for, spread over the
months, each row in its month's partition, an event's deliveries in the event's month."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from return_notify.devtools.history import generate_history
from return_notify.storage.db import get_engine, session_scope

pytestmark = pytest.mark.integration

END = datetime(2025, 6, 1, 10, 30, tzinfo=UTC)


def test_history_is_realistic_and_lands_in_its_months(scratch_db: str) -> None:
    # when
    result = generate_history(get_engine(), rows=3000, end=END, tenants=4)
    # then
    assert 2700 <= result.deliveries <= 3300
    assert len(result.months) == 13 and all(m["deliveries"] for m in result.months[:-1])
    with session_scope() as s:
        one = s.execute(text("""
            SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM events),
                   (SELECT count(*) FROM event_keys),
                   (SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_pk
                    WHERE d.id / 10000000000 <> e.id / 10000000000),
                   (SELECT count(*) FROM events WHERE id / 10000000000 <>
                    extract(year FROM received_at AT TIME ZONE 'UTC') * 100
                    + extract(month FROM received_at AT TIME ZONE 'UTC')),
                   (SELECT count(*) FROM events_default), (SELECT max(received_at) FROM events),
                   (SELECT count(DISTINCT state) FROM deliveries),
                   (SELECT count(*) FROM delivery_attempts),
                   (SELECT count(*) FROM deliveries WHERE state IN ('sent', 'delivered')
                    AND sent_at IS NULL)""")).one()
    total, events, keys, apart, wrong_month, default, newest, states, attempts, unsent = one
    assert total == result.deliveries and events == keys == result.events
    assert (apart, wrong_month, default, unsent) == (0, 0, 0, 0)
    assert newest < END and states >= 6 and attempts >= total * 0.9


def test_bench_history_fills_rolls_up_and_times_the_reads(scratch_db: str) -> None:
    from return_notify.devtools.history_bench import fill_history
    from return_notify.reporting import reads
    from return_notify.reporting.kpis import ReturnScope

    # when: what `bench --history 2000` does before its throughput runs
    out = fill_history(2000, repeat=1)
    # then: the history is there, rolled up, and every read was timed, the scoped ones too
    assert 1800 <= out["generated"]["deliveries"] <= 2200
    assert out["rollup"]["hours"] > 24 * 365 and not out["rollup"]["skipped"]
    # vacuumed before the measurement: no autovacuum of fresh partitions runs during it
    assert out["settle_s"] >= 0
    with session_scope() as s:
        vacuumed = s.execute(text(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'deliveries%' "
            "AND last_vacuum IS NOT NULL AND n_live_tup > 0")).scalar_one()
    assert vacuumed > 0
    reads_s = {k for k, v in out["reads"].items() if k.endswith("_s") and v >= 0}
    assert reads_s >= {"sweep_s", "stats_json_s", "report_s", "api_stats_s",
                       "api_stats_region_s", "api_stats_category_s", "api_stats_two_regions_s"}
    region = out["reads"]["api_scopes"]["region"].split("=")[1]
    with session_scope() as s:  # a scoped read of this database reads the aggregates
        assert reads.plan(s, None, out["reads"]["api_tenant"], ReturnScope((region,))) is not None
