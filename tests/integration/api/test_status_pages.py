"""The return's status page on the real app: ``/s/{token}`` (the sealed "View status" link
of every message) and ``/r/{tenant}/{return_id}`` (the unsealed link of messages rendered
without ``RSN_LINK_SECRET``), with events ingested and messages delivered by the pipeline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.integration.api_helpers import PUBLIC_BASE_URL, ApiEnv, env_override, make_tenant, uid

pytestmark = pytest.mark.integration

SECRET = "link-secret-for-status-page-tests"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def link_secret(api_env: ApiEnv) -> Iterator[None]:
    with env_override(RSN_LINK_SECRET=SECRET):
        yield


def ingest(slug: str, rid: str, milestone: str, at: datetime,
           data: dict[str, Any] | None = None) -> dict[str, list[int]]:
    from return_notify.pipeline.ingest import ingest_batch
    from return_notify.storage.db import session_scope
    from tests.helpers import event

    ev = event(milestone, tenant=slug, return_id=rid, at=at, data=data or {})
    with session_scope() as s:
        return dict(ingest_batch(s, [ev]).deliveries)


def status_token(tid: int, rid: str, milestone: str = "refund_processed",
                 language: str | None = "en", kind: str = "status") -> str:
    from return_notify.templating.links import LinkTarget, cached_link_key, seal

    return seal(LinkTarget(kind, tid, rid, milestone, "email", language),  # type: ignore[arg-type]
                cached_link_key(SECRET))


def steps(html: str) -> list[str]:
    return [unescape(re.sub(r"<time>.*", "", li))
            for li in re.findall(r"<li[^>]*>(.*?)</li>", html)]


def test_the_page_shows_the_milestones_the_customer_was_told_about(client: TestClient) -> None:
    # given a return that went through its milestones, with repeated carrier scans and a
    # late event older in lifecycle order than the return's status
    tid, slug, _ = make_tenant(name="Acme Outfitters")
    rid = uid("RMA-")
    for i, (milestone, data) in enumerate([
            ("return_initiated", {}), ("label_created", {}), ("in_transit", {}),
            ("in_transit", {}), ("warehouse_received", {}),
            ("refund_processed", {"refund_amount": "89.90", "currency": "EUR"})]):
        ingest(slug, rid, milestone, T0 + timedelta(hours=i), data)
    ingest(slug, rid, "shipment_dispatched", T0 + timedelta(hours=9))  # stale: not shown
    # when the customer opens the status link of a message
    r = client.get(f"/s/{status_token(tid, rid)}")
    # then they see the latest status first, then each milestone once, oldest first
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "<h1>Your refund has been issued</h1>" in r.text
    assert f"Return {rid} with Acme Outfitters." in r.text
    assert steps(r.text) == [
        "Return request received", "Your return label is ready",
        "Your return is in transit", "We've received your return",
        "Your refund has been issued"]
    # and nothing from the events' data: no amounts, no customer
    assert "89.90" not in r.text and "89,90" not in r.text
    assert "@example" not in r.text and "+1" not in r.text


def test_the_page_speaks_the_messages_language_and_shows_the_tenants_branding(
    client: TestClient,
) -> None:
    from return_notify.storage.db import session_scope
    from return_notify.templating.branding import BrandingUpdate, save_branding

    tid, slug, _ = make_tenant()
    with session_scope() as s:
        save_branding(s, tid, BrandingUpdate(
            display_name="Laden GmbH", brand_color="#aa0000", timezone="Europe/Berlin",
            support_url="https://laden.example/hilfe"), "test")
    rid = uid("RMA-")
    ingest(slug, rid, "label_created", T0)
    r = client.get(f"/s/{status_token(tid, rid, 'label_created', 'de')}")
    assert r.status_code == 200
    assert '<html lang="de"' in r.text and "Rücksendung" in r.text
    assert "Laden GmbH" in r.text and "#aa0000" in r.text
    assert "10:00" in r.text  # 09:00 UTC in Berlin
    assert 'href="https://laden.example/hilfe"' in r.text


def test_bad_misused_or_unknown_links_are_not_found(client: TestClient) -> None:
    tid, slug, _ = make_tenant(name="Acme")
    rid = uid("RMA-")
    ingest(slug, rid, "return_initiated", T0)
    good = status_token(tid, rid)
    altered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for bad in (altered, "x" * 40, status_token(tid, rid, kind="click"),
                status_token(tid, rid, kind="rating")):
        r = client.get(f"/s/{bad}")
        assert r.status_code == 404 and "Link not valid" in r.text, bad
    # a status token is no click and no rating either
    assert client.get(f"/r/{good}", follow_redirects=False).status_code == 404
    assert client.get(f"/rate/{good}").status_code == 404
    # a return the tenant no longer has (erased, or never known): not found, the tenant named
    gone = client.get(f"/s/{status_token(tid, uid('RMA-'))}")
    assert gone.status_code == 404 and "Return not found" in gone.text and "Acme" in gone.text
    # a tenant that does not exist
    assert client.get(f"/s/{status_token(10**9, rid)}").status_code == 404


def test_the_unsealed_link_shows_no_status_and_tells_nobody_whether_a_return_exists(
    client: TestClient,
) -> None:
    _, slug, _ = make_tenant(name="Acme")
    rid = uid("RMA-")
    ingest(slug, rid, "refund_processed", T0)
    known = client.get(f"/r/{slug}/{rid}")
    unknown = client.get(f"/r/{slug}/RMA-does-not-exist")
    assert known.status_code == unknown.status_code == 200
    assert "latest message from Acme" in known.text
    assert "refund" not in known.text.lower()
    assert known.text.replace(rid, "X") == unknown.text.replace("RMA-does-not-exist", "X")
    assert client.get(f"/r/{uid('t-')}/{rid}").status_code == 404
    assert client.get(f"/r/{slug}/{'x' * 65}").status_code == 422


def test_every_message_links_to_a_status_page_that_opens(client: TestClient) -> None:
    # given a tenant with no switches on: no tracking, no survey
    from return_notify.channels.inapp_inbox import InboxChannel
    from return_notify.channels.sandbox import SandboxChannel
    from return_notify.config.settings import Settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.storage.db import get_engine, session_scope

    _, slug, _ = make_tenant(name="Acme")
    rid = uid("RMA-")
    # when a refund is processed and its messages are delivered
    ids = ingest(slug, rid, "refund_processed", T0)
    assert "inapp" in ids
    for ch, dids in ids.items():
        channel = InboxChannel(engine=get_engine()) if ch == "inapp" \
            else SandboxChannel(ch, engine=get_engine())
        deliver_batch(session_scope, ch, dids, channel, Settings(max_attempts=2))
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT d.channel, coalesce(m.body, i.body, '') || coalesce(m.html, '') "
            "FROM deliveries d JOIN returns r ON r.id = d.return_pk "
            "LEFT JOIN sandbox_messages m ON m.delivery_id = d.id "
            "LEFT JOIN inbox_items i ON i.delivery_id = d.id WHERE r.return_id = :r"),
            {"r": rid}).all()
        inbox_cta = s.execute(text("SELECT cta_url FROM inbox_items WHERE return_id = :r"),
                              {"r": rid}).scalar()
    assert {ch for ch, _ in rows} == set(ids) and len(rows) >= 2
    # then each message's status link is a sealed /s/ link that shows the refund
    for ch, body in rows:
        links = set(re.findall(rf"{PUBLIC_BASE_URL}(/s/[A-Za-z0-9_-]+)", body))
        assert len(links) == 1 and f"/r/{slug}/" not in body, (ch, body)
        page = client.get(links.pop())
        assert page.status_code == 200 and "Your refund has been issued" in page.text, ch
    # the inbox item's call-to-action too (what a retailer's app opens)
    assert inbox_cta is not None and inbox_cta.startswith(f"{PUBLIC_BASE_URL}/s/")
