"""Capturing the insights' signals through the real pipeline: tracked SMS links and rating
links in the messages sent (only with the tenant's switches on), and the retailer's own
score on a ``return_completed`` event (``data.satisfaction``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.access.audit import Actor
from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings, get_settings, reset_settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import ingest_batch
from return_notify.storage.db import get_engine, session_scope
from return_notify.storage.tenants import find_tenant_id
from return_notify.templating.link_settings import InsightsSettings, save_insights
from return_notify.templating.links import cached_link_key, open_token
from tests.helpers import event, uid

pytestmark = pytest.mark.integration

SECRET = "link-secret-for-tests"
BASE = "https://notify.example.com"


@pytest.fixture
def linked(svc: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RSN_LINK_SECRET", SECRET)
    monkeypatch.setenv("RSN_PUBLIC_BASE_URL", BASE)
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def switches(tenant: str, **values: Any) -> int:
    with session_scope() as s:
        tid = find_tenant_id(s, tenant)
        assert tid is not None
        save_insights(s, tid, InsightsSettings(**values), Actor(None, "test"))
    return tid


def send(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    with session_scope() as s:
        ids = dict(ingest_batch(s, events).deliveries)
    settings = Settings(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, SandboxChannel(ch, engine=get_engine()), settings)
    return ids


def sent(return_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(milestone, channel) → what the sandbox provider received for the return."""
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT d.milestone, d.channel, m.body, m.html FROM deliveries d "
            "JOIN returns r ON r.id = d.return_pk JOIN sandbox_messages m ON m.delivery_id = d.id "
            "WHERE r.return_id = :r"), {"r": return_id}).mappings().all()
    return {(r["milestone"], r["channel"]): dict(r) for r in rows}


def test_with_the_switches_on_sms_links_are_tracked_and_final_messages_ask_for_a_rating(
    linked: None,
) -> None:
    # given a tenant with tracking and the survey on (its first event creates it)
    t, rid = uid("t-"), uid("RMA-")
    send([event("return_initiated", tenant=t, return_id=rid)])
    tid = switches(t, tracking=True, survey=True,
                   survey_milestones=["return_completed", "refund_processed"])
    # when the return moves on, is refunded and completes
    send([event("label_created", tenant=t, return_id=rid,
                data={"label_url": "https://labels.example.com/x.pdf"}),
          event("refund_processed", tenant=t, return_id=rid),
          event("return_completed", tenant=t, return_id=rid)])
    # then the SMS links are /r/ links naming this return's notification, never a URL
    got = sent(rid)
    key = cached_link_key(SECRET)
    sms = got[("label_created", "sms")]["body"]
    token = re.search(rf"{BASE}/r/([A-Za-z0-9_-]+)", sms)
    assert token and "labels.example.com" not in sms
    target = open_token(token.group(1), key)
    assert (target.kind, target.tenant_id, target.return_id, target.milestone,
            target.channel, target.language) == ("click", tid, rid, "label_created", "sms", "en")
    # and the final SMS (return_completed has none by default: the refund's) carries one
    # short rating link, the final email one link per score
    final_sms = got[("refund_processed", "sms")]["body"]
    assert "How did we do? Rate us 1-5:" in final_sms
    rate = re.findall(rf"{BASE}/rate/([A-Za-z0-9_-]+)", final_sms)
    assert len(rate) == 1 and open_token(rate[0], key).kind == "rating"
    html = got[("return_completed", "email")]["html"]
    scores = re.findall(rf'href="{BASE}/rate/[A-Za-z0-9_-]+\?score=(\d)"', html)
    assert scores == ["1", "2", "3", "4", "5"]
    assert 'aria-label="1 of 5 – Not at all satisfied"' in html
    assert "/rate/" in got[("return_completed", "email")]["body"]  # the plain-text part
    # and milestones without the survey carry none; email links are left to the provider
    assert "/rate/" not in sms
    assert "/r/" not in got[("label_created", "email")]["html"].replace(f"/r/{t}/", "")
    # and in-app items are stored as rendered: the inbox API rewrites them when read
    assert "/r/" not in (got[("label_created", "inapp")]["body"] or "").replace(f"/r/{t}/", "")


def test_with_the_switches_off_or_without_a_secret_nothing_is_rewritten(
    linked: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given one tenant with both switches off and one with them on but no link secret
    off, on = uid("t-"), uid("t-")
    send([event("return_initiated", tenant=off), event("return_initiated", tenant=on)])
    switches(off, tracking=False, survey=False)
    switches(on, tracking=True, survey=True)
    r1, r2 = uid("RMA-"), uid("RMA-")
    send([event("return_completed", tenant=off, return_id=r1)])
    monkeypatch.delenv("RSN_LINK_SECRET")
    reset_settings()
    send([event("return_completed", tenant=on, return_id=r2)])
    # then neither message has a tracked or rating link, and the CTA is the status page:
    # sealed with the secret, the unsealed /r/{tenant}/{return_id} without
    key = cached_link_key(SECRET)
    for rid, tenant in ((r1, off), (r2, on)):
        for (_, ch), msg in sent(rid).items():
            body = (msg["body"] or "") + (msg["html"] or "")
            assert "/rate/" not in body and not re.search(r"/r/[A-Za-z0-9_-]{20,}", body), ch
            if rid == r2:
                assert f"/r/{tenant}/{rid}" in body and "/s/" not in body, ch
                continue
            assert f"/r/{tenant}/" not in body, ch
            tokens = set(re.findall(rf"{BASE}/s/([A-Za-z0-9_-]+)", body))
            assert len(tokens) == 1, (ch, body)
            target = open_token(tokens.pop(), key)
            assert (target.kind, target.return_id, target.channel) == ("status", rid, ch)


def test_the_rating_speaks_the_customers_language_and_needs_no_tracking(linked: None) -> None:
    t, rid = uid("t-"), uid("RMA-")
    send([event("return_initiated", tenant=t, return_id=rid)])
    switches(t, survey=True, survey_milestones=["refund_processed"])
    send([event("refund_processed", tenant=t, return_id=rid,
                data={"refund_amount": "10.00", "currency": "EUR"}, customer={
                    "id": "c1", "email": "a@example.com", "phone": "+14155550123",
                    "locale": "fr-FR"})])
    got = sent(rid)
    assert "Votre avis ? Notez-nous de 1 à 5 :" in got[("refund_processed", "sms")]["body"]
    token = re.search(r"/rate/([A-Za-z0-9_-]+)", got[("refund_processed", "sms")]["body"])
    assert token and open_token(token.group(1), cached_link_key(SECRET)).language == "fr"
    assert "/r/" not in got[("refund_processed", "sms")]["body"].replace(f"/r/{t}/", "")


def ratings(return_id: str) -> list[tuple[int, str]]:
    with session_scope() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT s.score, s.source FROM satisfaction_ratings s JOIN returns r "
            "ON r.id = s.return_pk WHERE r.return_id = :r"), {"r": return_id})]


@pytest.mark.parametrize(("raw", "stored"), [
    (4, [(4, "event")]), ("5", [(5, "event")]), ({"score": 2}, [(2, "event")]),
    (7, []), ("great", []), (True, []), ({"stars": 5}, []),
])
def test_a_score_on_a_return_completed_event_is_stored_and_a_bad_one_ignored(
    svc: Any, raw: Any, stored: list[tuple[int, str]],
) -> None:
    # given a completion event carrying the retailer's survey score in data.satisfaction
    t, rid = uid("t-"), uid("RMA-")
    ev = event("return_completed", tenant=t, return_id=rid, data={"satisfaction": raw})
    # when it is ingested
    with session_scope() as s:
        result = ingest_batch(s, [ev])
    # then the score is the return's, and a malformed one costs the event nothing
    assert result.accepted == 1 and result.rejected == 0
    assert ratings(rid) == stored


def test_a_score_on_another_milestone_is_not_a_rating(svc: Any) -> None:
    t, rid = uid("t-"), uid("RMA-")
    with session_scope() as s:
        ingest_batch(s, [event("refund_processed", tenant=t, return_id=rid,
                               data={"satisfaction": 5})])
    assert ratings(rid) == []
    assert get_settings().rating_change_window_h == 168.0
