"""Each source's own payload to a delivered notification: real API, real Celery worker
subprocess, real Redis and PostgreSQL; the sandbox provider records e-mail and SMS in
``sandbox_messages``, in-app goes to ``inbox_items``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from return_notify.core.masking import mask
from return_notify.devtools.processes import Proc, start_worker
from return_notify.sources.carrier_events import set_secret
from return_notify.sources.tracking import remember_tracking
from return_notify.storage.db import session_scope
from return_notify.templating.render import format_date
from tests.helpers import wait_until
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
SECRET = "e2e-carrier-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def worker(api_env: ApiEnv, tmp_path_factory: Any) -> Iterator[Proc]:
    env = api_env.env(RSN_PUBLIC_BASE_URL=os.environ["RSN_PUBLIC_BASE_URL"])
    proc = start_worker(env, concurrency=2, logdir=str(tmp_path_factory.mktemp("logs")))
    yield proc
    proc.stop(20)


@pytest.fixture
def client(api_env: ApiEnv, worker: Proc) -> Iterator[TestClient]:
    from return_notify.api import sources
    from return_notify.api.app import create_app

    app = create_app()
    if not any(getattr(r, "path", None) == "/v1/carriers/{provider}" for r in app.routes):
        app.include_router(sources.router)
    with TestClient(app, base_url=PUBLIC_BASE_URL) as c:
        yield c


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def sent(return_id: str, milestone: str) -> dict[str, str] | None:
    """The return's deliveries for ``milestone`` by channel, once none is still in flight."""
    rows = dict(q("SELECT d.channel, d.state FROM deliveries d JOIN returns r ON "
                  "r.id = d.return_pk WHERE r.return_id = :r AND d.milestone = :m",
                  r=return_id, m=milestone))
    if rows and all(s in ("sent", "delivered", "failed", "dead", "skipped", "suppressed")
                    for s in rows.values()):
        return rows
    return None


def sandbox(return_id: str, milestone: str, channel: str) -> list[Any]:
    return q("SELECT s.recipient, s.subject, s.body FROM sandbox_messages s JOIN deliveries d "
             "ON d.id = s.delivery_id JOIN returns r ON r.id = d.return_pk WHERE "
             "r.return_id = :r AND d.milestone = :m AND d.channel = :c",
             r=return_id, m=milestone, c=channel)


def inbox(return_id: str, milestone: str) -> list[Any]:
    return q("SELECT customer_id, title, body FROM inbox_items WHERE return_id = :r "
             "AND milestone = :m", r=return_id, m=milestone)


def shopper_with_label(client: TestClient, tracking: str) -> tuple[int, str, str, dict[str, Any]]:
    """A tenant whose returns portal POSTed a label_created event, processed by the worker."""
    tid, slug, key = make_tenant()
    with session_scope() as s:
        for provider in ("easypost", "aftership", "shippo"):
            set_secret(s, tid, provider, SECRET)
    label = event(slug, milestone="label_created", customer={
        "id": "cust-7", "name": "Ana", "email": "ana@example.com", "phone": "+14155550123"},
        data={"tracking_number": tracking, "carrier": "usps",
              "label_url": "https://labels.example.com/l.pdf"})
    r = client.post("/v1/events", json=label, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    wait_until(lambda: sent(label["return_id"], "label_created"), what="label notifications")
    # Stand-in for ingest's hook (pipeline/ingest.py → remember_trackings); idempotent.
    rpk = q("SELECT id FROM returns WHERE tenant_id = :t AND return_id = :r", t=tid,
            r=label["return_id"])[0][0]
    with session_scope() as s:
        remember_tracking(s, tid, rpk, tracking, "usps")
    return tid, slug, key, label


def test_easypost_in_transit_webhook_becomes_a_delivered_sms_and_inapp_message(
    client: TestClient,
) -> None:
    # given
    tracking = uid("9400").upper()
    _, slug, key, label = shopper_with_label(client, tracking)
    rid = label["return_id"]
    body = body_of(easypost_event(tracking, "in_transit", est_delivery="2026-12-02T00:00:00Z"))
    # when
    r = client.post(f"/v1/carriers/easypost?tenant={slug}", content=body,
                    headers=easypost_headers(body, SECRET))
    # then
    assert r.status_code == 202 and r.json()["matched"] is True, r.text
    assert wait_until(lambda: sent(rid, "in_transit"), what="in_transit sent") == {
        "sms": "sent", "inapp": "sent"}
    [(phone, _, sms)] = sandbox(rid, "in_transit", "sms")
    assert phone == "+14155550123"
    assert "in transit" in sms and f"now due {format_date('2026-12-02')}" in sms
    assert inbox(rid, "in_transit")[0][0] == "cust-7"
    # and the backend reads back what the customer was told, and when
    view = client.get(f"/v1/returns/{rid}", headers={"Authorization": f"Bearer {key}"}).json()
    told = [d for d in view["deliveries"] if d["milestone"] == "in_transit" and d["channel"] == "sms"]
    assert told[0]["body"] == sms and told[0]["sent_at"] is not None
    assert told[0]["recipient"] == mask("+14155550123")
    assert ("in_transit", "carrier:easypost") in [
        (t["milestone"], t["source"]) for t in view["timeline"]]


def test_aftership_delivered_webhook_becomes_a_warehouse_received_email(client: TestClient) -> None:
    tracking = uid("1Z").upper()
    _, slug, _, label = shopper_with_label(client, tracking)
    rid = label["return_id"]
    body = body_of(aftership_webhook(tracking, "Delivered"))
    r = client.post(f"/v1/carriers/aftership?tenant={slug}", content=body,
                    headers=aftership_headers(body, SECRET))
    assert r.status_code == 202 and r.json()["milestone"] == "warehouse_received", r.text
    assert wait_until(lambda: sent(rid, "warehouse_received"), what="warehouse_received") == {
        "email": "sent", "inapp": "sent"}
    [(to, subject, text_body)] = sandbox(rid, "warehouse_received", "email")
    assert to == "ana@example.com" and rid in text_body
    assert subject and inbox(rid, "warehouse_received")


def test_shippo_transit_webhook_becomes_an_in_transit_sms(client: TestClient) -> None:
    tracking = uid("9205").upper()
    _, slug, _, label = shopper_with_label(client, tracking)
    r = client.post(f"/v1/carriers/shippo?tenant={slug}&token={SECRET}",
                    json=shippo_webhook(tracking, "TRANSIT"))
    assert r.status_code == 202 and r.json()["matched"] is True, r.text
    assert wait_until(lambda: sent(label["return_id"], "in_transit"), what="shippo in_transit")[
        "sms"] == "sent"


def test_wms_payload_mapped_by_yaml_becomes_a_delivered_email(client: TestClient) -> None:
    tracking = uid("EZ").upper()
    _, _, key, label = shopper_with_label(client, tracking)
    rid = label["return_id"]
    r = client.post("/v1/sources/example-wms/events", headers={"Authorization": f"Bearer {key}"},
                    json=[wms_message(rid, "RCV"), wms_message(rid, "HOLD")])
    assert r.status_code == 202, r.text
    assert r.json()["skipped"] == [1]
    assert wait_until(lambda: sent(rid, "warehouse_received"), what="wms warehouse_received")[
        "email"] == "sent"
    [(to, _, text_body)] = sandbox(rid, "warehouse_received", "email")
    assert to == "ana@example.com"  # the customer came from the return's label event
    assert "Organic cotton tee, M, blue" in text_body


def test_erp_credit_memo_becomes_a_refund_notification(client: TestClient) -> None:
    _, _, key = make_tenant()
    rid = uid("RMA-")
    r = client.post("/v1/sources/example-erp/events", headers={"Authorization": f"Bearer {key}"},
                    json=erp_credit_memo(rid, doc=uid("D")))
    assert r.status_code == 202, r.text
    states = wait_until(lambda: sent(rid, "refund_processed"), what="refund notifications")
    assert states == {"email": "sent", "sms": "sent", "inapp": "sent"}
    [(_, _, sms)] = sandbox(rid, "refund_processed", "sms")
    assert "$49.90" in sms


def test_ingest_indexes_the_tracking_number_of_a_label_event(client: TestClient) -> None:
    tid, slug, key = make_tenant()
    label = event(slug, milestone="label_created", data={"tracking_number": "1z 999 aa1"})
    client.post("/v1/events", json=label, headers={"Authorization": f"Bearer {key}"})
    wait_until(lambda: sent(label["return_id"], "label_created"), what="label processed")
    rows = q("SELECT t.tracking_number FROM carrier_trackings t JOIN returns r ON "
             "r.id = t.return_pk WHERE r.return_id = :r", r=label["return_id"])
    assert rows == [("1Z999AA1",)]
