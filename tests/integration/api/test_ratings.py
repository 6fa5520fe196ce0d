"""The satisfaction rating on the real app: ``/rate/{token}`` (the customer's page: one
click rates, a scanner stores nothing, the score is final after the change window) and the
retailer's ``POST /v1/returns/{id}/satisfaction``, which replaces the customer's score."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.api.links_helpers import (  # noqa: F401 - link_secret: an autouse fixture
    PERSON,
    SECRET,
    ingest,
    link_secret,
    q,
    switches,
    token,
    tracked_return,
)
from tests.integration.api_helpers import env_override, make_tenant, uid

pytestmark = pytest.mark.integration


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
