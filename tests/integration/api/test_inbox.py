"""The in-app inbox: the in-app channel's store, the customer API and the live SSE stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from return_notify.channels.base import OutboundMessage, SendResult
from return_notify.channels.inapp_inbox import InboxChannel
from return_notify.inbox import mint_inbox_token, tenant_inbox_secret
from tests.integration.api_helpers import INBOX_MASTER, ApiEnv, make_delivery, make_tenant, uid

pytestmark = pytest.mark.integration


def _token(slug: str, customer: str, ttl_s: int = 600) -> str:
    return mint_inbox_token(slug, customer, ttl_s, tenant_inbox_secret(INBOX_MASTER, slug))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _message(tid: int, slug: str, customer: str, n: int) -> OutboundMessage:
    d = make_delivery(tid, channel="inapp", state="sending", provider=None, recipient=customer)
    return OutboundMessage(
        delivery_id=d, channel="inapp", recipient=customer, tenant=slug,
        subject=f"Update {n}", text=f"Your return moved ({n}).",
        metadata={"milestone": "return_approved", "return_id": f"RMA-{n}",
                  "cta_url": f"https://shop.example.com/returns/RMA-{n}"})


def test_channel_stores_items_idempotently_per_delivery(api_env: ApiEnv) -> None:
    tid, slug, _ = make_tenant()
    customer = uid("cust-")
    channel = InboxChannel()
    msgs = [_message(tid, slug, customer, n) for n in range(3)]
    bad = OutboundMessage(delivery_id=msgs[0].delivery_id + 10_000, channel="inapp",
                          recipient=customer, tenant="no-such-tenant", text="x")
    first = channel.send_many([*msgs, bad])
    again = channel.send_many(msgs[:1])  # a redelivered message: same item, no duplicate
    channel.close()
    assert all(isinstance(r, SendResult) for r in first[:3])
    assert not isinstance(first[3], SendResult)
    assert type(first[3]).__name__ == "PermanentError"
    assert isinstance(again[0], SendResult)
    assert isinstance(first[0], SendResult)
    assert again[0].provider_message_id == first[0].provider_message_id


def test_list_paginate_read_and_read_all(client: TestClient, api_env: ApiEnv) -> None:
    # given five items for one customer and one for another
    tid, slug, _ = make_tenant()
    customer, other = uid("cust-"), uid("cust-")
    channel = InboxChannel()
    channel.send_many([_message(tid, slug, customer, n) for n in range(5)])
    channel.send_many([_message(tid, slug, other, 9)])
    channel.close()
    auth = _auth(_token(slug, customer))
    # when: two pages
    p1 = client.get("/v1/inbox", params={"limit": 3}, headers=auth).json()
    p2 = client.get("/v1/inbox", params={"limit": 3, "cursor": p1["next_cursor"]},
                    headers=auth).json()
    # then
    assert [i["title"] for i in p1["items"]] == ["Update 4", "Update 3", "Update 2"]
    assert [i["title"] for i in p2["items"]] == ["Update 1", "Update 0"]
    assert p2["next_cursor"] is None
    assert p1["unread_count"] == 5
    first = p1["items"][0]
    assert first["cta_url"] == "https://shop.example.com/returns/RMA-4"
    assert first["milestone"] == "return_approved" and first["return_id"] == "RMA-4"
    # read one (twice: idempotent), then all
    r = client.post(f"/v1/inbox/{first['id']}/read", headers=auth)
    again = client.post(f"/v1/inbox/{first['id']}/read", headers=auth)
    assert r.status_code == 200 and r.json()["unread_count"] == 4
    assert again.json()["item"]["read_at"] == r.json()["item"]["read_at"]
    unread = client.get("/v1/inbox", params={"unread_only": True}, headers=auth).json()
    assert len(unread["items"]) == 4
    all_read = client.post("/v1/inbox/read-all", headers=auth)
    assert all_read.json() == {"updated": 4, "unread_count": 0}
    assert client.get("/v1/inbox", headers=auth).json()["unread_count"] == 0
    # the other customer's inbox is untouched and not reachable
    other_auth = _auth(_token(slug, other))
    assert client.get("/v1/inbox", headers=other_auth).json()["unread_count"] == 1
    assert client.post(f"/v1/inbox/{first['id']}/read", headers=other_auth).status_code == 404


@pytest.mark.parametrize("kind", ["missing", "garbage", "expired", "other-tenant-secret",
                                  "master-as-tenant-secret"])
def test_bad_inbox_tokens_are_401(client: TestClient, kind: str) -> None:
    _, slug, _ = make_tenant()
    tokens = {
        "missing": None,
        "garbage": "i1.abc.def",
        "expired": mint_inbox_token(slug, "c", 60, tenant_inbox_secret(INBOX_MASTER, slug),
                                    now=time.time() - 3600),
        "other-tenant-secret": mint_inbox_token(slug, "c", 60,
                                                tenant_inbox_secret(INBOX_MASTER, "other")),
        "master-as-tenant-secret": mint_inbox_token(slug, "c", 60, INBOX_MASTER),
    }
    token = tokens[kind]
    r = client.get("/v1/inbox", headers=_auth(token) if token else {})
    assert r.status_code == 401
    assert r.json()["detail"]


def test_bad_cursor_is_422(client: TestClient) -> None:
    _, slug, _ = make_tenant()
    r = client.get("/v1/inbox", params={"cursor": "x1"}, headers=_auth(_token(slug, "c")))
    assert r.status_code == 422


# ------------------------------------------------------------------ live stream ---------

@pytest.fixture
def server(api_env: ApiEnv) -> Iterator[str]:
    """The real app on a real uvicorn, on a free port, in this process."""
    from return_notify.api.app import create_app

    config = uvicorn.Config(create_app(), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        event[field] = value.lstrip(" ")


def test_sse_client_receives_a_new_item_live(server: str, api_env: ApiEnv) -> None:
    # given: a customer's app connected with ?token= (as EventSource does)
    tid, slug, _ = make_tenant()
    customer = uid("cust-")
    got: list[dict[str, Any]] = []
    with httpx.Client(timeout=15) as http, http.stream(
        "GET", f"{server}/v1/inbox/stream", params={"token": _token(slug, customer)}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _sse(resp.iter_lines())
        ready = next(events)
        assert ready["event"] == "ready"
        assert json.loads(ready["data"]) == {"unread_count": 0}
        # when: the in-app channel delivers a notification
        channel = InboxChannel()
        result = channel.send_many([_message(tid, slug, customer, 1)])[0]
        channel.close()
        # then: it arrives on the open stream
        for ev in events:
            if ev.get("event") == "inbox_item":
                got.append(ev)
                break
    assert isinstance(result, SendResult)
    assert got[0]["id"] == result.provider_message_id
    item = json.loads(got[0]["data"])
    assert item["title"] == "Update 1" and item["body"] == "Your return moved (1)."


def test_sse_reconnect_catches_up_from_last_event_id(server: str, api_env: ApiEnv) -> None:
    tid, slug, _ = make_tenant()
    customer = uid("cust-")
    channel = InboxChannel()
    r1 = channel.send_many([_message(tid, slug, customer, 1)])[0]
    channel.send_many([_message(tid, slug, customer, 2), _message(tid, slug, customer, 3)])
    channel.close()
    assert isinstance(r1, SendResult)
    with httpx.Client(timeout=15) as http, http.stream(
        "GET", f"{server}/v1/inbox/stream", headers={
            "Authorization": f"Bearer {_token(slug, customer)}",
            "Last-Event-ID": r1.provider_message_id}
    ) as resp:
        events = _sse(resp.iter_lines())
        assert next(events)["event"] == "ready"
        missed = [json.loads(next(events)["data"])["title"] for _ in range(2)]
    assert missed == ["Update 2", "Update 3"]
