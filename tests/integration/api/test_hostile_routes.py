"""Hostile requests against a running API server: every route fuzzed with and without
credentials (no 5xx), bodies that cost before anyone is known, and the malformed inputs
that used to answer 500.

Against ``return-notify api`` as a real process (``hostile_stack``), so that what is
measured is what an attacker would cost it: its memory is sampled throughout and each
request's CPU is the server process's CPU time across it (``hostile_helpers.FIGURES``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

import pytest

from tests.integration.hostile_helpers import (
    FIGURES,
    INBOX_MASTER,
    HostileKeys,
    LiveClient,
    bearer,
)

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

pytestmark = pytest.mark.integration

MB = 1024 * 1024
#: ``RSN_HOSTILE_SCALE=10`` multiplies the examples per operation (CI runs 1: minutes, not hours)
SCALE = max(1, int(os.environ.get("RSN_HOSTILE_SCALE", "1")))


def _credential(path: str, keys: HostileKeys) -> str | None:
    if path.startswith(("/v1/admin", "/v1/quiet-hours", "/v1/throttle", "/v1/stats")):
        return keys.owner
    if path.startswith("/v1/inbox"):
        return keys.inbox
    if path.startswith(("/v1/webhooks", "/v1/unsubscribe", "/healthz", "/metrics")):
        return None
    return keys.tenant


def _send(client: LiveClient, case: Any, auth: str | None) -> Any:
    """A Schemathesis case sent through the counting client."""
    kw = case.as_transport_kwargs(base_url=client.stack.base_url,
                                  headers={"Authorization": f"Bearer {auth}"} if auth else {})
    headers = {k: v for k, v in kw["headers"].items()
               if k.lower() not in ("accept-encoding", "connection")}
    body: dict[str, Any] = {}
    if "json" in kw:
        body["content"] = json.dumps(kw["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    elif kw.get("data") is not None:
        body["content" if isinstance(kw["data"], bytes | str) else "data"] = kw["data"]
    path = kw["url"][len(client.stack.base_url):]
    return client.request(kw["method"], path, headers=headers, params=kw.get("params") or None,
                          cookies=kw.get("cookies") or None, **body)


def _fuzz(client: LiveClient, operation: Any, auth: str | None, examples: int) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        r = _send(client, case, auth)
        assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"

    fuzz()


def test_every_route_with_and_without_credentials_answers_without_a_server_error(
        live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    schema = schemathesis.openapi.from_url(live_client.stack.base_url + "/openapi.json").exclude(
        path="/v1/inbox/stream")  # never ends by design: tests of its own below
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 50
    failures: list[str] = []
    for operation in operations:
        for auth in (_credential(operation.path, hostile_keys), None):
            try:
                _fuzz(live_client, operation, auth, (8 if auth else 3) * SCALE)
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure
                failures.append(f"{operation.label} ({'key' if auth else 'no key'}): {exc}")
    FIGURES.count("schemathesis operations x credentials", 2 * len(operations))
    assert not failures, "\n\n".join(failures)


def test_a_huge_body_without_a_key_costs_nothing(live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    # 30 MB of [{},{},...] to a route with a body model used to be parsed before the 401
    body = b"[" + b"{}," * (10 * MB) + b"{}]"
    before = live_client.proc.memory_info().rss
    # refused by its Content-Length, or, streamed without one, by the key: never parsed
    r = live_client.post("/v1/admin/templates/preview", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (401, 413)
    chunked = live_client.post("/v1/admin/templates/preview", content=iter([body[:MB]] * 30),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 401
    # with a key: refused at the app-wide cap while it streams (no Content-Length either)
    assert live_client.post("/v1/admin/templates/preview", content=body, headers={
        **bearer(hostile_keys.viewer), "Content-Type": "application/json"}).status_code == 413
    assert live_client.post("/v1/admin/templates/preview", content=iter([body[:MB]] * 30), headers={
        **bearer(hostile_keys.viewer), "Content-Type": "application/json"}).status_code == 413
    assert live_client.post("/v1/events", content=iter([body[:MB]] * 30), headers={
        **bearer(hostile_keys.tenant), "Content-Type": "application/json"}).status_code == 413
    grew_mb = (live_client.proc.memory_info().rss - before) / MB
    FIGURES.count("unauthenticated or oversized bodies", 5)
    assert grew_mb < 64, f"the API grew by {grew_mb:.0f} MB"


@pytest.mark.parametrize("path", ["/v1/events", "/v1/admin/templates/preview",
                                  "/v1/admin/templates/validate", "/v1/sources/wms/events"])
def test_deep_json_is_refused_with_422(live_client: LiveClient, hostile_keys: HostileKeys, path: str) -> None:
    auth = hostile_keys.tenant if path.startswith(("/v1/events", "/v1/sources")) else hostile_keys.viewer
    for depth in (40, 1500, 100_000):
        r = live_client.post(path, content=b"[" * depth + b"]" * depth,
                        headers={**bearer(auth), "Content-Type": "application/json"})
        assert r.status_code in (404, 422), (depth, r.status_code, r.text[:200])
    FIGURES.count("deep JSON bodies", 3)


def _forged_token(claims: dict[str, Any], slug: str) -> str:
    from return_notify.inbox import tenant_inbox_secret

    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    mac = hmac.new(tenant_inbox_secret(INBOX_MASTER, slug).encode(), f"i1.{payload}".encode(),
                   hashlib.sha256).digest()
    return f"i1.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_the_malformed_inputs_that_answered_500_answer_4xx(live_client: LiveClient,
                                                           hostile_keys: HostileKeys) -> None:
    # an inbox token with exp 1e999 (infinity), or one that lives for ten years
    for exp in ("1e999", str(2**40)):
        raw = _forged_token({"t": hostile_keys.slug, "c": "c-1", "exp": 0}, hostile_keys.slug)
        token = _forged_token({"t": hostile_keys.slug, "c": "c-1", "exp": json.loads(exp)}, hostile_keys.slug)
        assert raw != token
        assert live_client.get("/v1/inbox", headers=bearer(token)).status_code == 401
    # superscript digits pass str.isdigit() and then int() fails
    assert live_client.get("/v1/inbox", params={"cursor": "²"},
                      headers=bearer(hostile_keys.inbox)).status_code == 422
    assert live_client.get("/v1/inbox/stream", headers={**bearer(hostile_keys.inbox),
                                                   "Last-Event-ID": "²".encode()}).status_code == 422
    # a SendGrid timestamp of 5,000 digits (int() refuses more than 4,300)
    r = live_client.post("/v1/webhooks/sendgrid/events", content=b"[]", headers={
        "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": "AA==",
        "X-Twilio-Email-Event-Webhook-Timestamp": "9" * 5000})
    assert r.status_code == 403
    # a template nested 1,900 parentheses deep
    r = live_client.post("/v1/admin/templates/validate", headers=bearer(hostile_keys.viewer), json={
        "channel": "sms", "milestone": "refund_processed", "part": "text", "locale": "en",
        "source": "{{ " + "(" * 1900 + "1" + ")" * 1900 + " }} {{ return_id }} {{ cta_url }}"})
    assert r.status_code == 200 and r.json()["ok"] is False
    assert "nested too deeply" in r.json()["problems"][0]
    FIGURES.count("malformed inputs of finding 10", 7)


def test_live_streams_are_capped_per_customer_over_one_redis_connection(
        live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    import httpx

    redis_port = int(live_client.stack.env["RSN_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])

    def api_redis_connections() -> int:  # of the API process itself, whatever else runs
        return sum(1 for c in live_client.proc.net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == redis_port and c.status == "ESTABLISHED")

    before = api_redis_connections()
    url = live_client.stack.base_url + "/v1/inbox/stream"
    streams: list[Any] = []
    try:
        with httpx.Client(timeout=10) as http:
            for _ in range(3):  # RSN_INBOX_STREAM_MAX_PER_CUSTOMER
                cm = http.stream("GET", url, params={"token": hostile_keys.inbox})
                response = cm.__enter__()
                lines = response.iter_lines()  # kept: a closed iterator ends the stream
                streams.append((cm, lines))
                assert response.status_code == 200
                assert next(lines).startswith(("event: ready", ":"))
            over = http.get(url, params={"token": hostile_keys.inbox})
            assert over.status_code == 429 and over.headers.get("Retry-After")
            # three streams, one pub/sub connection at most (the hub's), not one each
            assert api_redis_connections() - before <= 1
    finally:
        for cm, _ in streams:
            cm.__exit__(None, None, None)
    FIGURES.count("live stream caps", 4)


def test_secrets_never_reach_the_access_log(live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    live_client.get("/v1/inbox", params={"token": hostile_keys.inbox})
    live_client.post("/v1/carriers/shippo", params={"tenant": hostile_keys.slug, "token": "shippo-s3cret-x"},
                json={})
    live_client.get("/v1/unsubscribe/u1.QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    log = live_client.stack.api.logfile.read_text(errors="replace")
    assert "/v1/inbox?token=[redacted]" in log
    assert hostile_keys.inbox not in log and hostile_keys.inbox.split(".")[1] not in log
    assert "shippo-s3cret-x" not in log
    assert "u1.QUJDREVGR0hJSktMTU5PUFFSU1RVVldY" not in log


@pytest.mark.parametrize("path", ["/v1/admin/templates/validate", "/v1/admin/templates/preview",
                                  "/v1/admin/branding", "/v1/events"])
def test_nul_and_lone_surrogates_in_a_body_answer_422(live_client: LiveClient,
                                                      hostile_keys: HostileKeys,
                                                      path: str) -> None:
    # JSON escapes decode to text PostgreSQL cannot store and an error cannot echo (a
    # 422 naming a key with a lone surrogate was a 500: its JSON could not be encoded)
    auth = hostile_keys.tenant if path == "/v1/events" else hostile_keys.owner
    method = "PUT" if path.endswith("branding") else "POST"
    for bad in ('{"channel": "\\ud800", "milestone": "x", "part": "text", "source": "s"}',
                '{"\\ud800": "\\u0000", "display_name": "Bob\\u0000"}',
                '[{"event_id": "e", "data": {"\\udfff": 1}}]'):
        r = live_client.request(method, path, content=bad.encode(),
                                headers={**bearer(auth), "Content-Type": "application/json"})
        assert r.status_code == 422, (bad, r.status_code, r.text[:300])
    FIGURES.count("NUL and lone surrogates in bodies", 3)
