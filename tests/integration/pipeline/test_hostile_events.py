"""Hostile events through every way in, into a real worker: nothing accepted is lost.

Property-based (Hypothesis) over the event contract: arbitrary Unicode (NUL, lone
surrogates, control and format characters, other planes), sizes past every cap, nesting
past the contract's 16 levels, unknown fields, through ``publish``, ``POST /v1/events`` and
the Redis Stream listener, mixed with good events of the same batch. Every event a way in
accepted must end up stored or in ``rejected_events``; the worker must not crash; a refusal
is a 4xx, never a 5xx. (It used to be otherwise: ``data.reason: "\\ud800"`` was accepted
and then the whole batch was neither stored nor rejected.)
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import event, wait_until
from tests.integration.api_helpers import make_tenant, uid
from tests.integration.hostile_helpers import (
    FIGURES,
    HostileStack,
    bearer,
    hostile_event,
    nested,
    stored_or_rejected,
)

pytestmark = pytest.mark.integration

#: ``RSN_HOSTILE_SCALE=10`` multiplies the examples (CI runs 1)
SCALE = max(1, int(os.environ.get("RSN_HOSTILE_SCALE", "1")))
#: the stream listener's cap of one entry (RSN_STREAM_MAX_ENTRY_BYTES' default)
ENTRY_CAP = 1_048_576
HOSTILE_TENANTS = st.sampled_from(["", "\x00", "Bad Tenant", "a" * 70, "t\ud800", "ok-2nd"])


def _wait_for_all(tracers: set[str], timeout_s: float = 120.0) -> set[str]:
    """The tracers still neither stored nor rejected after ``timeout_s`` (empty: none)."""
    try:
        wait_until(lambda: stored_or_rejected(tracers) == tracers, timeout_s=timeout_s,
                   interval_s=0.5, what="every accepted event stored or rejected")
    except AssertionError:
        pass
    return tracers - stored_or_rejected(tracers)


def test_good_poison_good_over_http_is_refused_whole_with_the_poison_named(
        hostile_env: HostileStack) -> None:
    # given a tenant and a batch with one event the database could never store
    _, slug, key = make_tenant()
    client = hostile_env.client()
    good = [event("return_approved", tenant=slug) for _ in range(2)]
    poison = event("return_approved", tenant=slug, customer={"id": "c-1", "name": "Bob\u0000"})
    # when it is posted, the poison in the middle
    r = client.post("/v1/events", json=[good[0], poison, good[1]], headers=bearer(key))
    # then nothing is accepted (all or nothing per request), the poison is named
    assert r.status_code == 422, r.text
    assert [p["index"] for p in r.json()["detail"]] == [1]
    assert "NUL" in json.dumps(r.json())
    # and the good events, posted again alone, are accepted and stored
    again = client.post("/v1/events", json=good, headers=bearer(key))
    assert again.status_code == 202
    tracers = {e["return_id"] for e in good}
    assert _wait_for_all(tracers) == set()
    FIGURES.count("http batches with poison", 1)


def test_poison_that_skips_the_checks_is_isolated_in_the_worker(
        hostile_env: HostileStack) -> None:
    """A producer that sends raw messages (or an old one) bypasses validation: the worker
    isolates each bad event, per tenant, and stores the others of the same batch."""
    from return_notify.producer import publish_raw_batches

    # given two tenants' events in one message, with a lone surrogate, a NUL and nesting
    _, a, _ = make_tenant()
    _, b, _ = make_tenant()
    good = [event("return_approved", tenant=t) for t in (a, b, a, b)]
    poison = [
        event("return_approved", tenant=a, data={"reason": "\ud800"}),
        event("return_approved", tenant=b, customer={"id": "c", "name": "Bob\u0000"}),
        event("return_approved", tenant=a, data={"x": nested(20)}),
    ]
    batch = [good[0], poison[0], good[1], poison[1], good[2], poison[2], good[3]]
    # when they reach the worker in one message
    publish_raw_batches([batch])
    # then every good event is stored and every poison is in rejected_events
    assert _wait_for_all({e["return_id"] for e in batch}) == set()
    assert stored_or_rejected({e["return_id"] for e in good}) == {e["return_id"] for e in good}
    assert hostile_env.worker_crashes() == 0
    FIGURES.count("raw batches with poison", 1)


@pytest.mark.timeout(600)
def test_hostile_events_are_stored_or_rejected_whichever_way_they_come_in(
        hostile_env: HostileStack) -> None:
    import redis

    from return_notify.errors import EventValidationError
    from return_notify.producer import publish

    _, slug, key = make_tenant()
    client = hostile_env.client()
    stream = redis.Redis.from_url(hostile_env.env["RSN_BROKER_URL"])
    stream_key = hostile_env.env["RSN_REDIS_KEY_PREFIX"] + "events:stream"
    accepted: set[str] = set()
    too_big: set[str] = set()  # stream entries over RSN_STREAM_MAX_ENTRY_BYTES
    came: dict[str, str] = {}  # tracer -> the way it came in
    tried = refused = 0

    @given(data=st.data(), way=st.sampled_from(["publish", "http", "stream"]),
           size=st.integers(min_value=1, max_value=4))
    @settings(max_examples=75 * SCALE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def send(data: st.DataObject, way: str, size: int) -> None:
        nonlocal tried, refused
        events = []
        for _ in range(size):
            tenant = slug if way == "http" or data.draw(st.integers(0, 5)) else \
                data.draw(HOSTILE_TENANTS)
            events.append(hostile_event(tenant, uid("HX-"), data.draw))
        tried += len(events)
        if way == "publish":
            for ev in events:
                try:
                    publish(ev)
                except EventValidationError:
                    refused += 1
                    continue
                accepted.add(ev["return_id"])
                came[ev["return_id"]] = way
        elif way == "http":
            r = client.post("/v1/events", content=json.dumps(events).encode(),
                            headers={**bearer(key), "Content-Type": "application/json"})
            assert r.status_code < 500, r.text[:500]
            if r.status_code == 202:
                accepted.update(ev["return_id"] for ev in events)
                came.update((ev["return_id"], way) for ev in events)
            else:
                assert r.status_code in (400, 403, 413, 422), r.text[:500]
                refused += len(events)
        else:  # XADD'd as a JSON array, escapes and all, as a producer in any language would
            entry = {"events": json.dumps(events)}
            entry_id = stream.xadd(stream_key, entry)
            if sum(len(k) + len(v) for k, v in entry.items()) > ENTRY_CAP:
                too_big.add(entry_id.decode())  # refused whole, into the dead letter
                refused += len(events)
            else:
                accepted.update(ev["return_id"] for ev in events)
                came.update((ev["return_id"], way) for ev in events)

    try:
        send()
        lost = _wait_for_all(accepted)
        # an entry over the cap is refused whole, with the reason, in the dead-letter stream
        dead = {f[b"original_id"].decode(): f[b"reason"].decode()
                for _, f in stream.xrange(stream_key + ":dead")}
        assert all("RSN_STREAM_MAX_ENTRY_BYTES" in dead.get(i, "") for i in too_big), too_big
    finally:
        stream.close()
    FIGURES.events_tried += tried
    FIGURES.events_accepted += len(accepted)
    FIGURES.events_lost += len(lost)
    FIGURES.count("hostile events refused at the door", refused)
    assert not lost, f"{len(lost)} accepted events neither stored nor rejected: " + \
        ", ".join(f"{t} ({came.get(t)})" for t in sorted(lost)[:5])
    assert hostile_env.worker_crashes() == 0, hostile_env.worker.log_tail(40)
    assert hostile_env.listener.popen.poll() is None, hostile_env.listener.log_tail(40)
