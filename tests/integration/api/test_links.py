"""The customer's side of the insights on the real app: ``/r/{token}`` (record the click
once, with consent, then 302 to the notification's own https link), ``/rate/{token}`` (the
satisfaction page), the retailer's ``POST /v1/returns/{id}/satisfaction``, SendGrid opens
and clicks, and the inbox's rewritten links. The satisfaction page and API:
``test_ratings.py``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.integration.api.links_helpers import (  # noqa: F401 - link_secret: an autouse fixture
    PERSON,
    SECRET,
    clicks,
    ingest,
    link_secret,
    q,
    status_page,
    switches,
    token,
    tracked_return,
)
from tests.integration.api_helpers import (
    INBOX_MASTER,
    PUBLIC_BASE_URL,
    ApiEnv,
    make_tenant,
    sendgrid_headers,
    uid,
)

pytestmark = pytest.mark.integration

# ------------------------------------------------------------------ /r/{token} ----------

def test_a_click_is_recorded_once_and_goes_to_the_notifications_own_https_link(
    client: TestClient,
) -> None:
    # given a tracked SMS link of a label notification
    tid, _, rid = tracked_return()
    url = f"/r/{token(tid, rid, 'label_created')}"
    # when the customer taps it twice
    first = client.get(url, headers=PERSON, follow_redirects=False)
    again = client.get(url, headers=PERSON, follow_redirects=False)
    # then both go to the label, and one click of that SMS is recorded, with its delivery
    for r in (first, again):
        assert r.status_code == 302, r.text
        assert r.headers["location"] == "https://labels.example.com/abc.pdf"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
    assert clicks(rid) == [("sms", "label_created", "click", "redirect", True)]


@pytest.mark.parametrize("request_kind", ["scanner", "preview", "head"])
def test_robots_are_redirected_but_not_counted(client: TestClient, request_kind: str) -> None:
    tid, _, rid = tracked_return()
    url = f"/r/{token(tid, rid, 'label_created')}"
    if request_kind == "head":
        r = client.head(url, headers=PERSON, follow_redirects=False)
    elif request_kind == "preview":  # a link preview: a fetch, not a navigation
        r = client.get(url, headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
                       follow_redirects=False)
    else:  # a mail scanner sends no Sec-Fetch headers at all
        r = client.get(url, follow_redirects=False)
    assert r.status_code == 302
    assert clicks(rid) == []


@pytest.mark.parametrize("why", ["switch off", "customer opted out", "producer's opt-out",
                                 "customer erased"])
def test_without_consent_a_click_is_redirected_and_nothing_is_stored(
    client: TestClient, why: str,
) -> None:
    # given a return whose clicks may not be recorded
    from return_notify.policy.preferences import Preferences, put_preferences
    from return_notify.storage.db import session_scope

    tid, slug, _ = make_tenant()
    switches(tid, tracking=why != "switch off")
    rid, customer = uid("RMA-"), uid("cust-")
    ingest(slug, rid, "label_created", {"label_url": "https://labels.example.com/x.pdf"},
           customer=customer,
           prefs={"tracking": False} if why == "producer's opt-out" else None)
    if why == "customer opted out":
        with session_scope() as s:
            put_preferences(s, tid, customer, Preferences(tracking=False))
    if why == "customer erased":
        from return_notify.pipeline.retention import erase_customer

        with session_scope() as s:
            erase_customer(s, slug, customer)
    # when the customer taps the link
    r = client.get(f"/r/{token(tid, rid, 'label_created')}", headers=PERSON,
                   follow_redirects=False)
    # then they get where they wanted (erased: the status page), and nothing is recorded
    assert r.status_code == 302
    assert r.headers["location"] == ("https://labels.example.com/x.pdf" if why != "customer erased"
                                     else status_page(tid, rid, "label_created"))
    assert clicks(rid) == []


@pytest.mark.parametrize("label_url", ["http://labels.example.com/x.pdf", "javascript:alert(1)",
                                       "https://user:pw@labels.example.com/x", "//evil.example",
                                       "https://labels.example.com/a b", None])
def test_a_link_that_is_not_plain_https_goes_to_the_status_page(
    client: TestClient, label_url: str | None,
) -> None:
    tid, _, rid = tracked_return(data={"label_url": label_url} if label_url else {})
    r = client.get(f"/r/{token(tid, rid, 'label_created')}?url=https://evil.example",
                   headers=PERSON, follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == status_page(tid, rid, "label_created")


def test_forged_altered_or_misused_tokens_are_not_found(client: TestClient) -> None:
    tid, _, rid = tracked_return()
    good = token(tid, rid, "label_created")
    altered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    rating = token(tid, rid, "return_completed", kind="rating")
    for bad in (altered, "x" * 40, rating):
        r = client.get(f"/r/{bad}", headers=PERSON, follow_redirects=False)
        assert r.status_code == 404, bad
        assert "not valid" in r.text
    assert client.get(f"/rate/{good}").status_code == 404  # a click token is not a rating
    assert clicks(rid) == []


# ------------------------------------------------------------------ SendGrid ------------

def test_sendgrid_opens_and_clicks_are_recorded_once_with_consent(
    client: TestClient, api_env: ApiEnv,
) -> None:
    import json

    from tests.integration.api_helpers import make_delivery

    tid, _, _ = make_tenant()
    other, _, _ = make_tenant()
    switches(tid, tracking=True)
    d = make_delivery(tid, milestone="refund_processed", return_ref=uid("RMA-"))
    off = make_delivery(other, milestone="refund_processed")
    now = int(time.time())
    events = [
        {"event": "open", "sg_event_id": uid("e"), "timestamp": now, "delivery_id": str(d)},
        {"event": "open", "sg_event_id": uid("e"), "timestamp": now + 60, "delivery_id": str(d)},
        {"event": "click", "sg_event_id": uid("e"), "timestamp": now + 5, "delivery_id": str(d),
         "url": "https://shop.example.com"},
        {"event": "open", "sg_event_id": uid("e"), "timestamp": now, "delivery_id": str(off)},
    ]
    raw = json.dumps(events).encode()
    r = client.post("/v1/webhooks/sendgrid/events", content=raw,
                    headers=sendgrid_headers(api_env, raw, now))
    assert r.status_code == 200, r.text
    assert r.json()["engagement"] == 2 and r.json()["ignored"] == 2
    rows = q("SELECT kind, channel, milestone, source, delivery_id, extract(epoch FROM at) "
             "FROM engagement_signals WHERE tenant_id IN (:a, :b) ORDER BY kind", a=tid, b=other)
    assert [tuple(x[:5]) for x in rows] == [
        ("click", "email", "refund_processed", "sendgrid", d),
        ("open", "email", "refund_processed", "sendgrid", d)]
    assert int(rows[1][5]) == now  # the first open, not the second
    assert q("SELECT state FROM deliveries WHERE id = :d", d=d)[0][0] == "sent"


# ------------------------------------------------------------------ the inbox -----------

def test_the_inbox_hands_out_tracked_and_rating_links_unless_the_customer_opted_out(
    client: TestClient,
) -> None:
    from return_notify.inbox import mint_inbox_token, tenant_inbox_secret
    from return_notify.policy.preferences import Preferences, put_preferences
    from return_notify.storage.db import session_scope
    from return_notify.templating.links import cached_link_key, open_token

    tid, slug, _ = make_tenant()
    switches(tid, tracking=True, survey=True)
    items: dict[str, str] = {}
    for customer in ("keen", "private"):
        rid = uid("RMA-")
        items[customer] = rid
        with session_scope() as s:
            s.execute(text(
                "INSERT INTO inbox_items (tenant_id, customer_id, title, body, cta_url, "
                "milestone, return_id) VALUES (:t, :c, 'Done', 'Your return is complete.', "
                ":u, 'return_completed', :r)"),
                {"t": tid, "c": customer, "u": f"{PUBLIC_BASE_URL}/r/{slug}/{rid}", "r": rid})
    with session_scope() as s:
        put_preferences(s, tid, "private", Preferences(tracking=False))

    def inbox(customer: str) -> dict[str, Any]:
        tok = mint_inbox_token(slug, customer, 600, tenant_inbox_secret(INBOX_MASTER, slug))
        page = client.get("/v1/inbox", headers={"Authorization": f"Bearer {tok}"})
        assert page.status_code == 200, page.text
        return page.json()["items"][0]  # type: ignore[no-any-return]

    keen, private = inbox("keen"), inbox("private")
    key = cached_link_key(SECRET)
    assert keen["cta_url"].startswith(f"{PUBLIC_BASE_URL}/r/")
    target = open_token(keen["cta_url"].rsplit("/", 1)[1], key)
    assert (target.kind, target.channel, target.return_id) == ("click", "inapp", items["keen"])
    assert sorted(keen["rating_urls"]) == ["1", "2", "3", "4", "5"]
    assert keen["rating_urls"]["3"] == keen["rating_url"] + "?score=3"
    # opted out of tracking: the link is the plain one; the rating (an answer, not
    # tracking) is still offered
    assert private["cta_url"] == f"{PUBLIC_BASE_URL}/r/{slug}/{items['private']}"
    assert private["rating_url"] is not None
    # and the stored items never changed
    assert {r[0] for r in q("SELECT cta_url FROM inbox_items WHERE tenant_id = :t", t=tid)} \
        == {f"{PUBLIC_BASE_URL}/r/{slug}/{rid}" for rid in items.values()}
