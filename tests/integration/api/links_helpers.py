"""Shared by the tests of the customer's links (``test_links.py``, ``test_ratings.py``): the
link secret, a tracked return, sealed tokens and what was recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.api_helpers import (
    PUBLIC_BASE_URL,
    ApiEnv,
    env_override,
    make_tenant,
    uid,
)

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
