"""Carrier webhooks and feed mappings on the real app, PostgreSQL and Redis (no worker: what
reaches the ``events`` queue is read back from Redis, so "nothing published" is exact)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from return_notify.pipeline.ingest import ingest_batch
from return_notify.sources.carrier_events import rematch, set_secret
from return_notify.sources.tracking import remember_tracking
from return_notify.storage.db import session_scope
from tests.integration.api_helpers import PUBLIC_BASE_URL, ApiEnv, event, make_tenant, uid
from tests.sources_samples import (
    aftership_headers,
    aftership_webhook,
    body_of,
    easypost_event,
    easypost_headers,
    erp_credit_memo,
    shippo_webhook,
    wms_message,
)

pytestmark = pytest.mark.integration
SECRET = "carrier-webhook-secret-0123456789"


@pytest.fixture
def client(api_env: ApiEnv) -> Iterator[TestClient]:
    """The app with the sources router (included here until ``create_app`` does)."""
    from return_notify.api import sources
    from return_notify.api.app import create_app

    app = create_app()
    if not any(getattr(r, "path", None) == "/v1/carriers/{provider}" for r in app.routes):
        app.include_router(sources.router)
    with TestClient(app, base_url=PUBLIC_BASE_URL) as c:
        yield c


def tenant_with_secrets() -> tuple[int, str, str]:
    tid, slug, key = make_tenant()
    with session_scope() as s:
        for provider in ("easypost", "aftership", "shippo"):
            set_secret(s, tid, provider, SECRET)
    return tid, slug, key


def seed_return(tid: int, slug: str, tracking: str | None = None) -> dict[str, Any]:
    """A return with a label_created event, ingested in-process; its tracking number indexed."""
    label = event(slug, milestone="label_created", customer={
        "id": "cust-9", "name": "Ana", "email": "ana@example.com", "phone": "+14155550123"},
        data={"tracking_number": tracking or uid("1Z").upper(), "carrier": "usps"},
        region="US", product_category="apparel")
    with session_scope() as s:
        ingest_batch(s, [label])
        rpk = s.execute(text("SELECT id FROM returns WHERE tenant_id = :t AND return_id = :r"),
                        {"t": tid, "r": label["return_id"]}).scalar_one()
        # what ingest does once wired (idempotent, so harmless if it already did)
        remember_tracking(s, tid, rpk, label["data"]["tracking_number"], "usps")
    return label


def post_easypost(client: TestClient, slug: str, payload: Any, secret: str = SECRET) -> Any:
    body = body_of(payload)
    return client.post(f"/v1/carriers/easypost?tenant={slug}", content=body,
                       headers=easypost_headers(body, secret))


def unmatched_rows(tid: int) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text("SELECT tracking_number, seen, matched_at FROM "
                                   "unmatched_carrier_events WHERE tenant_id = :t ORDER BY id"),
                              {"t": tid}).all())


# ------------------------------------------------------------------ carriers ----------

def test_matched_easypost_update_publishes_our_event_with_the_known_customer(
    client: TestClient, api_env: ApiEnv,
) -> None:
    # given
    tid, slug, _ = tenant_with_secrets()
    label = seed_return(tid, slug, "9400 1000 0000 0000 0000 01")
    api_env.clear_queue()
    payload = easypost_event("9400100000000000000001", tracker_id="trk_e2e1")
    # when
    r = post_easypost(client, slug, payload)
    again = post_easypost(client, slug, payload)  # the provider retries
    # then
    assert r.status_code == 202, r.text
    assert r.json() == {"matched": True, "event_id": "easypost:trk_e2e1:in_transit:2026-12-02",
                        "return_id": label["return_id"], "milestone": "in_transit"}
    assert again.json()["event_id"] == r.json()["event_id"]
    queued = api_env.queued_events()
    assert [e["event_id"] for e in queued] == [r.json()["event_id"]] * 2  # ingest dedupes
    ev = queued[0]
    assert ev["tenant"] == slug and ev["source"] == "carrier:easypost"
    assert ev["customer"]["email"] == "ana@example.com" and ev["region"] == "US"
    assert ev["data"]["eta"] == "2026-12-02T00:00:00+00:00"
    assert ev["data"]["tracking_number"] == "9400100000000000000001"


@pytest.mark.parametrize("provider", ["easypost", "aftership", "shippo"])
def test_forged_or_unsigned_webhooks_are_rejected_and_nothing_is_published(
    client: TestClient, api_env: ApiEnv, provider: str,
) -> None:
    tid, slug, _ = tenant_with_secrets()
    label = seed_return(tid, slug)
    number = label["data"]["tracking_number"]
    api_env.clear_queue()
    payload = {"easypost": easypost_event(number), "aftership": aftership_webhook(number),
               "shippo": shippo_webhook(number)}[provider]
    body = body_of(payload)
    forged = {"easypost": easypost_headers(body, "guessed-secret"),
              "aftership": aftership_headers(body, "guessed-secret"), "shippo": {}}[provider]
    query = "&token=guessed-secret" if provider == "shippo" else ""
    attempts = [
        client.post(f"/v1/carriers/{provider}?tenant={slug}{query}", content=body, headers=forged),
        client.post(f"/v1/carriers/{provider}?tenant={slug}", content=body,
                    headers={"Content-Type": "application/json"}),
        client.post(f"/v1/carriers/{provider}?tenant=no-such-tenant{query}", content=body,
                    headers=forged),
    ]
    assert [a.status_code for a in attempts] == [403, 403, 403]
    assert api_env.queued_events() == []
    assert unmatched_rows(tid) == []


def test_a_tampered_body_fails_even_with_a_once_valid_signature(client: TestClient,
                                                                api_env: ApiEnv) -> None:
    tid, slug, _ = tenant_with_secrets()
    label = seed_return(tid, slug)
    api_env.clear_queue()
    body = body_of(aftership_webhook(label["data"]["tracking_number"], "Delivered"))
    headers = aftership_headers(body, SECRET)
    r = client.post(f"/v1/carriers/aftership?tenant={slug}",
                    content=body.replace(b"Delivered", b"Exception"), headers=headers)
    assert r.status_code == 403
    assert api_env.queued_events() == []


def test_unknown_tracking_number_is_kept_for_an_operator_then_rematched(
    client: TestClient, api_env: ApiEnv,
) -> None:
    # given: the carrier reports before our label event arrived
    tid, slug, key = tenant_with_secrets()
    api_env.clear_queue()
    payload = easypost_event("EZ4000000004", "delivered", tracker_id="trk_late")
    # when
    r1 = post_easypost(client, slug, payload)
    r2 = post_easypost(client, slug, payload)
    # then
    assert r1.status_code == 202 and r1.json()["matched"] is False
    assert r2.json()["unmatched_id"] == r1.json()["unmatched_id"]
    assert [(n, seen) for n, seen, _ in unmatched_rows(tid)] == [("EZ4000000004", 2)]
    listed = client.get("/v1/carriers/unmatched", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    assert listed.json()[0]["tracking_number"] == "EZ4000000004"
    assert listed.json()[0]["milestone"] == "warehouse_received"
    assert api_env.queued_events() == []
    # when the label event arrives and an operator rematches
    label = seed_return(tid, slug, "EZ4000000004")
    published: list[dict[str, Any]] = []
    result = rematch(session_scope, published.extend, tid)
    # then
    assert result == {"checked": 1, "published": 1}
    assert published[0]["return_id"] == label["return_id"]
    assert published[0]["milestone"] == "warehouse_received"
    assert unmatched_rows(tid)[0][2] is not None
    assert rematch(session_scope, published.extend, tid) == {"checked": 0, "published": 0}


def test_aftership_return_reference_in_custom_fields_matches_without_the_index(
    client: TestClient, api_env: ApiEnv,
) -> None:
    tid, slug, _ = tenant_with_secrets()
    label = seed_return(tid, slug)
    api_env.clear_queue()
    body = body_of(aftership_webhook("NOT-INDEXED-1", "Exception", subtag="Exception_011",
                                     subtag_message="Returned to sender",
                                     custom_fields={"return_id": label["return_id"]}))
    r = client.post(f"/v1/carriers/aftership?tenant={slug}", content=body,
                    headers=aftership_headers(body, SECRET))
    assert r.status_code == 202 and r.json()["matched"] is True
    [ev] = api_env.queued_events()
    assert ev["milestone"] == "exception" and ev["data"]["reason"] == "returned_to_sender"


def test_statuses_without_a_milestone_are_acknowledged_and_ignored(client: TestClient,
                                                                  api_env: ApiEnv) -> None:
    tid, slug, _ = tenant_with_secrets()
    label = seed_return(tid, slug)
    api_env.clear_queue()
    number = label["data"]["tracking_number"]
    r = post_easypost(client, slug, easypost_event(number, "unknown"))
    batch = post_easypost(client, slug, {"description": "batch.updated", "object": "Event",
                                         "result": {"object": "Batch"}})
    shippo_ok = client.post(f"/v1/carriers/shippo?tenant={slug}&token={SECRET}",
                            json=shippo_webhook(number, "UNKNOWN"))
    assert [x.status_code for x in (r, batch, shippo_ok)] == [200, 200, 200]
    assert "ignored" in r.json()
    assert api_env.queued_events() == [] and unmatched_rows(tid) == []


def test_signed_but_malformed_payload_is_422(client: TestClient, api_env: ApiEnv) -> None:
    _, slug, _ = tenant_with_secrets()
    r = post_easypost(client, slug, {"description": "tracker.updated", "result": {}})
    assert r.status_code == 422 and "tracking_code" in r.json()["detail"]


def test_a_tenant_sets_its_secret_over_the_api(client: TestClient, api_env: ApiEnv) -> None:
    tid, slug, key = make_tenant()
    auth = {"Authorization": f"Bearer {key}"}
    new = "rotated-secret-abcdefghijklmnop"
    assert client.put("/v1/carriers/aftership/secret", json={"secret": "short"},
                      headers=auth).status_code == 422
    assert client.put("/v1/carriers/aftership/secret", json={"secret": new},
                      headers=auth).status_code == 204
    body = body_of(aftership_webhook("UNKNOWN-9", "InTransit"))
    r = client.post(f"/v1/carriers/aftership?tenant={slug}", content=body,
                    headers=aftership_headers(body, new))
    assert r.status_code == 202 and r.json()["matched"] is False


# ------------------------------------------------------------------ feeds -------------

def test_feed_payload_is_mapped_and_queued(client: TestClient, api_env: ApiEnv) -> None:
    _, slug, key = make_tenant()
    api_env.clear_queue()
    auth = {"Authorization": f"Bearer {key}"}
    listed = client.get("/v1/sources", headers=auth).json()
    assert {"example-wms", "example-erp"} <= {s["source"] for s in listed}
    r = client.post("/v1/sources/example-erp/events", headers=auth,
                    json=[erp_credit_memo("RMA-1", doc="D1"), erp_credit_memo("RMA-1", "DRAFT")])
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ["erp-D1-POSTED"], "skipped": [1]}
    [ev] = api_env.queued_events()
    assert ev["tenant"] == slug and ev["milestone"] == "refund_processed"


def test_feed_problems_are_422_per_record_and_nothing_is_queued(client: TestClient,
                                                                api_env: ApiEnv) -> None:
    _, _, key = make_tenant()
    api_env.clear_queue()
    auth = {"Authorization": f"Bearer {key}"}
    bad = erp_credit_memo("RMA-2", "TELEPORTED")
    r = client.post("/v1/sources/example-erp/events", headers=auth,
                    json=[erp_credit_memo("RMA-2"), bad])
    assert r.status_code == 422
    [detail] = r.json()["detail"]
    assert detail["index"] == 1
    assert detail["problems"][0]["field"] == "milestone"
    assert detail["problems"][0]["path"] == "header.status"
    assert api_env.queued_events() == []
    assert client.post("/v1/sources/nope/events", headers=auth, json={}).status_code == 404
    assert client.post("/v1/sources/example-erp/events", json={}).status_code == 401


def test_customer_from_return_fills_the_shopper_or_says_why_not(client: TestClient,
                                                                api_env: ApiEnv) -> None:
    tid, slug, key = make_tenant()
    label = seed_return(tid, slug)
    api_env.clear_queue()
    auth = {"Authorization": f"Bearer {key}"}
    dry = client.post("/v1/sources/example-wms/events?dry_run=true", headers=auth,
                      json=wms_message(label["return_id"], receipt="R77"))
    assert dry.status_code == 200, dry.text
    [ev] = dry.json()["events"]
    assert ev["customer"] == {"id": "cust-9", "name": "Ana", "email": "ana@example.com",
                              "phone": "+14155550123"}
    assert ev["region"] == "US" and api_env.queued_events() == []
    unknown = client.post("/v1/sources/example-wms/events", headers=auth,
                          json=wms_message("RMA-NEVER-SEEN"))
    assert unknown.status_code == 422
    assert "no earlier events" in unknown.json()["detail"][0]["problems"][0]["message"]


def test_carriers_cli_sets_a_secret_and_lists_unmatched_updates(client: TestClient,
                                                                api_env: ApiEnv) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from return_notify.cli.sources import register

    app = typer.Typer()
    register(app)
    tid, slug, _ = make_tenant()
    out = CliRunner().invoke(app, ["carriers", "secret", slug, "easypost", "--json"])
    assert out.exit_code == 0, out.output
    created = json.loads(out.stdout)
    assert created["url"] == f"{PUBLIC_BASE_URL}/v1/carriers/easypost?tenant={slug}"
    r = post_easypost(client, slug, easypost_event("EZ777"), secret=created["secret"])
    assert r.status_code == 202 and r.json()["matched"] is False
    listed = CliRunner().invoke(app, ["carriers", "unmatched", "--tenant", slug, "--json"])
    assert [row["tracking_number"] for row in json.loads(listed.stdout)] == ["EZ777"]
    assert CliRunner().invoke(app, ["carriers", "secret", "no-such-tenant", "easypost"]
                              ).exit_code == 1
