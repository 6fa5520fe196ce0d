"""One-click unsubscribe (``/v1/unsubscribe/<token>``) on real services: a confirmation page,
an idempotent suppression, and nothing changed by a bad token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from return_notify.policy.suppression import make_unsubscribe_token, unsubscribe_url
from tests.integration.api_helpers import (
    PUBLIC_BASE_URL,
    UNSUBSCRIBE_SECRET,
    make_tenant,
    suppressions,
    uid,
)

pytestmark = pytest.mark.integration


def test_get_shows_a_confirmation_page_and_changes_nothing(client: TestClient) -> None:
    _, slug, _ = make_tenant(name="Acme Outfitters")
    email = f"{uid('ana')}@example.com"
    url = unsubscribe_url(slug, email)
    assert url.startswith(PUBLIC_BASE_URL + "/v1/unsubscribe/u1.")
    assert email not in url and email.split("@")[0] not in url
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "Acme Outfitters" in r.text and '<form method="post"' in r.text
    assert "List-Unsubscribe" in r.text
    assert email not in r.text  # masked
    assert suppressions("email", email) == []


def test_one_click_post_suppresses_and_is_idempotent(client: TestClient) -> None:
    from return_notify.policy.suppression import is_suppressed
    from return_notify.storage.db import session_scope

    tid, slug, _ = make_tenant()
    email = f"{uid('Bo')}@Example.com"
    url = unsubscribe_url(slug, email)
    body = {"content": b"List-Unsubscribe=One-Click",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    r = client.post(url, **body)  # type: ignore[arg-type]
    again = client.post(url, **body)  # type: ignore[arg-type]
    assert r.status_code == 200 and again.status_code == 200
    assert r.json() == {"unsubscribed": True, "address": "b***@example.com"}
    rows = suppressions("email", email.lower())
    assert [(x["tenant_id"], x["reason"], x["source"]) for x in rows] == [
        (tid, "unsubscribe", "one-click")]
    with session_scope() as s:
        assert is_suppressed(s, tid, "email", email) == "unsubscribe"
    page = client.get(url)
    assert "You are unsubscribed" in page.text


def test_browser_post_gets_an_html_confirmation(client: TestClient) -> None:
    _, slug, _ = make_tenant()
    r = client.post(unsubscribe_url(slug, f"{uid('x')}@example.com"),
                    headers={"Accept": "text/html"}, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "You are unsubscribed" in r.text


@pytest.mark.parametrize("kind", ["garbage", "wrong-secret", "truncated"])
def test_invalid_tokens_change_nothing(client: TestClient, kind: str) -> None:
    _, slug, _ = make_tenant()
    email = f"{uid('z')}@example.com"
    good = make_unsubscribe_token(slug, "email", email, UNSUBSCRIBE_SECRET)
    token = {"garbage": "u1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             "wrong-secret": make_unsubscribe_token(slug, "email", email, "other-secret"),
             "truncated": good[:-4]}[kind]
    assert client.get(f"/v1/unsubscribe/{token}").status_code == 400
    r = client.post(f"/v1/unsubscribe/{token}")
    assert r.status_code == 400 and r.json()["detail"]
    assert suppressions("email", email) == []
