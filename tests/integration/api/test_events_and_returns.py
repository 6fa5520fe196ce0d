"""POST /v1/events and GET /v1/returns on the real app, real PostgreSQL and real Redis."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.integration.api_helpers import (
    ApiEnv,
    closed_port_url,
    env_override,
    event,
    make_delivery,
    make_tenant,
)

pytestmark = pytest.mark.integration


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_one_event_and_an_array_are_accepted_and_queued(client: TestClient, api_env: ApiEnv
                                                        ) -> None:
    # given
    api_env.clear_queue()
    _, slug, key = make_tenant()
    one, many = event(slug), [event(slug) for _ in range(3)]
    # when
    r1 = client.post("/v1/events", json=one, headers=_auth(key))
    r2 = client.post("/v1/events", json=many, headers=_auth(key))
    # then
    assert r1.status_code == 202, r1.text
    assert r1.json() == {"accepted": [one["event_id"]]}
    assert r2.status_code == 202
    assert r2.json()["accepted"] == [e["event_id"] for e in many]
    queued = api_env.queued_events()
    assert [e["event_id"] for e in queued] == [one["event_id"], *(e["event_id"] for e in many)]
    assert queued[0]["customer"]["email"] == "ana@example.com"


def test_invalid_events_get_per_event_per_field_errors_and_nothing_is_queued(
    client: TestClient, api_env: ApiEnv,
) -> None:
    api_env.clear_queue()
    _, slug, key = make_tenant()
    good = event(slug)
    bad = event(slug, milestone="teleported", customer={"id": "c", "email": "nope"})
    unknown = event(slug, colour="red")
    r = client.post("/v1/events", json=[good, bad, unknown], headers=_auth(key))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [d["index"] for d in detail] == [1, 2]
    assert detail[0]["event_id"] == bad["event_id"]
    fields = {e["field"] for e in detail[0]["errors"]}
    assert fields == {"milestone", "customer.email"}
    assert all({"field", "message", "type"} <= e.keys() for e in detail[0]["errors"])
    assert detail[1]["errors"][0]["field"] == "colour"
    assert "unknown field" in detail[1]["errors"][0]["message"]
    assert api_env.queued_events() == []


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "not valid JSON"),
    (b"[]", "empty"),
    (b'"just a string"', "must be a JSON object"),
])
def test_malformed_bodies_are_422_with_a_clear_message(client: TestClient, body: bytes,
                                                       needle: str) -> None:
    _, _, key = make_tenant()
    r = client.post("/v1/events", content=body,
                    headers={**_auth(key), "Content-Type": "application/json"})
    assert r.status_code == 422
    assert needle in str(r.json()["detail"])


def test_more_than_1000_events_are_refused(client: TestClient, api_env: ApiEnv) -> None:
    api_env.clear_queue()
    _, slug, key = make_tenant()
    r = client.post("/v1/events", json=[event(slug) for _ in range(1001)], headers=_auth(key))
    assert r.status_code == 422
    assert "at most 1000" in str(r.json()["detail"])
    assert api_env.queued_events() == []


def test_event_for_another_tenant_is_403_and_nothing_is_queued(client: TestClient,
                                                               api_env: ApiEnv) -> None:
    api_env.clear_queue()
    _, slug, key = make_tenant()
    _, other, _ = make_tenant()
    r = client.post("/v1/events", json=[event(slug), event(other)], headers=_auth(key))
    assert r.status_code == 403
    assert "index 1" in r.json()["detail"]
    assert api_env.queued_events() == []


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer rsn_x_y"])
def test_missing_or_bad_key_is_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = client.post("/v1/events", json=event("acme"), headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["detail"]


def test_revoked_key_is_401(client: TestClient) -> None:
    from return_notify.access.tenant_keys import revoke_api_key
    from return_notify.storage.db import session_scope

    _, slug, key = make_tenant()
    assert client.post("/v1/events", json=event(slug), headers=_auth(key)).status_code == 202
    with session_scope() as s:
        assert revoke_api_key(s, key.split("_")[1])
    assert client.post("/v1/events", json=event(slug), headers=_auth(key)).status_code == 401


def test_broker_down_is_503_with_retry_after_and_nothing_published(api_env: ApiEnv) -> None:
    from return_notify.api.app import create_app

    # given: keys are made while the real broker is configured; then the broker goes away
    _, slug, key = make_tenant()
    api_env.clear_queue()
    with env_override(RSN_BROKER_URL=closed_port_url()), TestClient(create_app()) as c:
        # when
        t0 = time.monotonic()
        r = c.post("/v1/events", json=[event(slug), event(slug)], headers=_auth(key))
        took = time.monotonic() - t0
    # then
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) > 0
    assert r.json()["published"] == 0
    assert "nothing was accepted" in r.json()["detail"]
    assert took < 10
    assert api_env.queued_events() == []


def test_return_view_shows_timeline_and_what_the_customer_was_told(client: TestClient) -> None:
    tid, slug, key = make_tenant()
    d = make_delivery(tid, return_ref="RMA-VIEW-1", recipient="ana.smith@example.com",
                      subject="Your return is approved", body="Hi Ana, good news.")
    make_delivery(tid, return_ref="RMA-VIEW-1", channel="sms", recipient="+14155550123",
                  provider="twilio", subject=None, body="Approved!", milestone="label_created")
    r = client.get("/v1/returns/RMA-VIEW-1", headers=_auth(key))
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["return_id"] == "RMA-VIEW-1"
    assert [t["milestone"] for t in view["timeline"]] == ["return_approved", "label_created"]
    email = next(x for x in view["deliveries"] if x["channel"] == "email")
    assert email["id"] == d
    assert email["recipient"] == "a***@example.com"
    assert email["subject"] == "Your return is approved"
    assert email["body"] == "Hi Ana, good news."
    assert email["sent_at"] is not None
    sms = next(x for x in view["deliveries"] if x["channel"] == "sms")
    assert sms["recipient"] == "+1******0123"
    assert "ana.smith@" not in r.text and "+14155550123" not in r.text


def test_return_of_another_tenant_is_not_visible(client: TestClient) -> None:
    tid, _, _ = make_tenant()
    _, _, other_key = make_tenant()
    make_delivery(tid, return_ref="RMA-PRIVATE")
    r = client.get("/v1/returns/RMA-PRIVATE", headers=_auth(other_key))
    assert r.status_code == 404
    assert "RMA-PRIVATE" in r.json()["detail"]
