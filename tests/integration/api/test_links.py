"""The customer's side of the insights on the real app: ``/r/{token}`` (record the click
once, with consent, then 302 to the notification's own https link), ``/rate/{token}`` (the
satisfaction page), the retailer's ``POST /v1/returns/{id}/satisfaction``, SendGrid opens
and clicks, and the inbox's rewritten links."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.integration.api_helpers import (
    INBOX_MASTER,
    PUBLIC_BASE_URL,
    ApiEnv,
    env_override,
    make_tenant,
    sendgrid_headers,
    uid,
)

pytestmark = pytest.mark.integration

SECRET = "link-secret-for-api-tests"
#: what a person's browser sends when they tap a link in an SMS or an email
PERSON = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-User": "?1",
          "Sec-Fetch-Dest": "document"}


@pytest.fixture(scope="module", autouse=True)
def link_secret(api_env: ApiEnv) -> Iterator[None]:
    with env_override(RSN_LINK_SECRET=SECRET, RSN_RATING_CHANGE_WINDOW_H=None):
        yield


def q(sql: str, **params: Any) -> list[Any]:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def switches(tid: int, **values: Any) -> None:
    from return_notify.access.audit import Actor
    from return_notify.storage.db import session_scope
    from return_notify.templating.link_settings import InsightsSettings, save_insights

    with session_scope() as s:
        save_insights(s, tid, InsightsSettings(**values), Actor(None, "test"))


def ingest(slug: str, rid: str, milestone: str, data: dict[str, Any] | None = None,
           customer: str = "cust-1", prefs: dict[str, Any] | None = None) -> None:
    from return_notify.pipeline.ingest import ingest_batch
    from return_notify.storage.db import session_scope
    from tests.helpers import event

    d = dict(data or {})
    if prefs is not None:
        d["preferences"] = prefs
    ev = event(milestone, tenant=slug, return_id=rid, data=d)
    ev["customer"]["id"] = customer
    with session_scope() as s:
        ingest_batch(s, [ev])


def token(tid: int, rid: str, milestone: str, channel: str = "sms", kind: str = "click",
          language: str | None = "en") -> str:
    from return_notify.templating.links import LinkTarget, cached_link_key, seal

    return seal(LinkTarget(kind, tid, rid, milestone, channel, language),  # type: ignore[arg-type]
                cached_link_key(SECRET))


def status_page(tid: int, rid: str, milestone: str, channel: str = "sms") -> str:
    """The sealed status page a click falls back to (the same notification's)."""
    return f"{PUBLIC_BASE_URL}/s/{token(tid, rid, milestone, channel, kind='status')}"


def clicks(rid: str) -> list[tuple[str, str, str, str, bool]]:
    return [tuple(r) for r in q(
        "SELECT e.channel, e.milestone, e.kind, e.source, e.delivery_id IS NOT NULL "
        "FROM engagement_signals e JOIN returns r ON r.id = e.return_pk "
        "WHERE r.return_id = :r ORDER BY e.id", r=rid)]


def tracked_return(milestone: str = "label_created", data: dict[str, Any] | None = None,
                   **sw: Any) -> tuple[int, str, str]:
    tid, slug, _ = make_tenant()
    switches(tid, **({"tracking": True} | sw))
    rid = uid("RMA-")
    ingest(slug, rid, milestone, data if data is not None else
           {"label_url": "https://labels.example.com/abc.pdf"})
    return tid, slug, rid


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


# ------------------------------------------------------------------ /rate/{token} -------

def rating(rid: str) -> tuple[int, str, str | None, int] | None:
    rows = q("SELECT s.score, s.source, s.channel, s.changes FROM satisfaction_ratings s "
             "JOIN returns r ON r.id = s.return_pk WHERE r.return_id = :r", r=rid)
    return tuple(rows[0]) if rows else None  # type: ignore[return-value]


def test_one_click_rates_the_return_and_the_page_thanks_in_the_customers_language(
    client: TestClient,
) -> None:
    # given the rating link of a German customer's completion email
    tid, _, rid = tracked_return("return_completed", {}, survey=True)
    url = f"/rate/{token(tid, rid, 'return_completed', 'email', 'rating', 'de')}"
    # when they click "4"
    r = client.get(url + "?score=4", headers=PERSON)
    # then the score is the return's, and the page says thank you (and until when it may
    # be changed, with the buttons to do so)
    assert r.status_code == 200
    assert rating(rid) == (4, "link", "email", 0)
    assert '<html lang="de"' in r.text and "Vielen Dank!" in r.text
    assert "Ihre Bewertung: 4 von 5." in r.text and "ändern" in r.text
    assert 'aria-pressed="true">4</button>' in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    # when they click it again, then choose 2 on the page
    client.get(url + "?score=4", headers=PERSON)
    changed = client.post(url, data={"score": "2"})
    # then it changed once
    assert changed.status_code == 200 and "Ihre Bewertung: 2 von 5." in changed.text
    assert rating(rid) == (2, "link", "email", 1)


def test_a_scanner_opening_a_score_link_stores_nothing_and_a_person_confirms(
    client: TestClient,
) -> None:
    tid, _, rid = tracked_return("return_completed", {}, survey=True)
    url = f"/rate/{token(tid, rid, 'return_completed', 'email', 'rating', 'fr')}"
    for score in (1, 2, 3, 4, 5):  # a mail scanner follows every link of the message
        r = client.get(f"{url}?score={score}")
        assert r.status_code == 200
    assert rating(rid) is None
    assert "Vous avez choisi 5 sur 5." in r.text and '<form method="post"' in r.text
    confirmed = client.post(url, data={"score": "5"})
    assert "Votre note : 5 sur 5." in confirmed.text
    assert rating(rid) == (5, "link", "email", 0)


def test_after_the_window_the_score_is_final(client: TestClient) -> None:
    tid, _, rid = tracked_return("return_completed", {}, survey=True)
    url = f"/rate/{token(tid, rid, 'return_completed', 'sms', 'rating')}"
    with env_override(RSN_LINK_SECRET=SECRET, RSN_RATING_CHANGE_WINDOW_H="0"):
        first = client.post(url, data={"score": "3"})
        later = client.post(url, data={"score": "5"})
        page = client.get(url)
    assert "Your rating: 3 of 5." in first.text
    assert "Your rating of 3 of 5 is recorded." in later.text and "<form" not in later.text
    assert "<form" not in page.text
    assert rating(rid) == (3, "link", "sms", 0)


@pytest.mark.parametrize("body", [{"score": "0"}, {"score": "6"}, {"score": "x"}, {}])
def test_a_bad_score_is_refused(client: TestClient, body: dict[str, str]) -> None:
    tid, _, rid = tracked_return("return_completed", {}, survey=True)
    r = client.post(f"/rate/{token(tid, rid, 'return_completed', 'sms', 'rating')}", data=body)
    assert r.status_code == 422
    assert rating(rid) is None


def test_the_page_without_a_score_asks_with_five_labelled_buttons(client: TestClient) -> None:
    tid, _, rid = tracked_return("return_completed", {}, survey=True)
    r = client.get(f"/rate/{token(tid, rid, 'return_completed', 'sms', 'rating', 'es')}",
                   headers=PERSON)
    assert r.status_code == 200
    assert "¿Qué tal lo hemos hecho?" in r.text and "<script" not in r.text
    assert r.text.count('<button type="submit" name="score"') == 5
    assert 'aria-label="1 de 5 – Nada satisfecho"' in r.text
    assert 'aria-label="5 de 5 – Muy satisfecho"' in r.text
    assert "<legend>" in r.text


# ------------------------------------------------------------------ retailer's API ------

def test_the_retailers_score_replaces_the_customers_and_a_link_cannot_undo_it(
    client: TestClient,
) -> None:
    tid, slug, api_key = make_tenant()
    switches(tid, survey=True)
    rid = uid("RMA-")
    ingest(slug, rid, "return_completed")
    auth = {"Authorization": f"Bearer {api_key}"}
    path = f"/v1/returns/{rid}/satisfaction"
    # the customer rates 2 through the link, then the retailer's survey says 4
    client.post(f"/rate/{token(tid, rid, 'return_completed', 'email', 'rating')}",
                data={"score": "2"})
    first = client.post(path, json={"score": 4}, headers=auth)
    same = client.post(path, json={"score": 4}, headers=auth)
    link = client.post(f"/rate/{token(tid, rid, 'return_completed', 'email', 'rating')}",
                       data={"score": "1"})
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "changed" and first.json()["source"] == "api"
    assert first.json()["changeable_until"] is None
    assert same.json()["outcome"] == "unchanged"
    assert "Your rating of 4 of 5 is recorded." in link.text
    assert rating(rid) == (4, "api", None, 1)
    # and the return's view shows it
    view = client.get(f"/v1/returns/{rid}", headers=auth).json()
    assert view["satisfaction"]["score"] == 4 and view["satisfaction"]["source"] == "api"


@pytest.mark.parametrize(("body", "code"), [
    ({"score": 6}, 422), ({"score": 0}, 422), ({"score": "4"}, 200), ({"score": 3, "x": 1}, 422),
    ({"score": 3, "rated_at": "2026-01-05T10:00:00"}, 422), ({}, 422)])
def test_the_api_validates_the_score(client: TestClient, body: dict[str, Any], code: int) -> None:
    _, slug, api_key = make_tenant()
    rid = uid("RMA-")
    ingest(slug, rid, "return_completed")
    r = client.post(f"/v1/returns/{rid}/satisfaction", json=body,
                    headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == code, r.text


def test_the_api_needs_a_key_and_a_known_return(client: TestClient) -> None:
    _, _, api_key = make_tenant()
    assert client.post("/v1/returns/RMA-1/satisfaction", json={"score": 3}).status_code == 401
    r = client.post("/v1/returns/RMA-nope/satisfaction", json={"score": 3},
                    headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 404


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
