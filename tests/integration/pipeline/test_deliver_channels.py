"""``deliver_channels``: an event's notifications on several channels, claimed together in
one statement and recorded through one recorder (the ingest task's inline delivery). Real
PostgreSQL; the sandbox provider and the real inbox channel."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from return_notify.channels.inapp_inbox import InboxChannel
from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_channels
from return_notify.pipeline.ingest import IngestResult, ingest_batch
from return_notify.storage.db import get_engine, session_scope
from tests.helpers import event, uid

pytestmark = pytest.mark.integration


def _ingest(events: list[Any]) -> IngestResult:
    with session_scope() as s:
        return ingest_batch(s, events)


def _rows(ids: list[int]) -> dict[int, tuple[str, str | None, int]]:
    """id -> (state, claim_token, attempt rows)"""
    with session_scope() as s:
        return {i: (st, tok, n) for i, st, tok, n in s.execute(text(
            "SELECT d.id, d.state, d.claim_token, "
            "(SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) "
            "FROM deliveries d WHERE d.id = ANY(:ids)"), {"ids": ids})}


def _channels() -> dict[str, Any]:
    return {"email": SandboxChannel("email", engine=get_engine()),
            "sms": SandboxChannel("sms", engine=get_engine()),
            "inapp": InboxChannel()}


@pytest.fixture
def tenant(svc: Any) -> str:
    return uid("t-")


def test_one_claim_sends_and_records_every_channel_once(tenant: str) -> None:
    # given: two events for three channels each
    evs = [event("label_created", tenant=tenant,
                 data={"label_url": f"https://labels.example.com/{i}.pdf"}) for i in range(2)]
    result = _ingest(evs)
    batches = {ch: (ids, _channels()[ch]) for ch, ids in result.deliveries.items()}
    assert sorted(batches) == ["email", "inapp", "sms"]

    # when
    outcomes = deliver_channels(session_scope, batches, Settings())

    # then: every delivery is sent with one attempt row (the in-app one writes no attempt
    # to a provider but is sent all the same), and nothing is left claimed
    for ch, (ids, _) in batches.items():
        assert outcomes[ch].claimed == 2, ch
        assert dict(outcomes[ch].states) == {"sent": 2}, ch
        rows = _rows(ids)
        assert {st for st, _, _ in rows.values()} == {"sent"}, ch
        assert {tok for _, tok, _ in rows.values()} == {None}, ch
    with session_scope() as s:
        sandboxed = s.execute(text("SELECT count(*) FROM sandbox_messages "
                                   "WHERE delivery_id = ANY(:ids)"),
                              {"ids": result.deliveries["email"] + result.deliveries["sms"]}
                              ).scalar_one()
        inbox = s.execute(text("SELECT count(*) FROM inbox_items WHERE delivery_id = ANY(:ids)"),
                          {"ids": result.deliveries["inapp"]}).scalar_one()
    assert sandboxed == 4 and inbox == 2
    # an event's two provider calls fit one window: one write-back for the lot, not one per
    # channel
    assert sum(o.write_backs for o in outcomes.values()) == 1

    # and when: the same ids are delivered again (a redelivered message)
    again = deliver_channels(session_scope, batches, Settings())

    # then: nothing is claimed, nothing sent twice
    assert {ch: o.claimed for ch, o in again.items()} == {"email": 0, "sms": 0, "inapp": 0}


def test_an_id_is_claimed_only_under_its_own_channel(tenant: str) -> None:
    # given: an event's SMS delivery id handed over as an email id
    result = _ingest([event("label_created", tenant=tenant,
                            data={"label_url": "https://labels.example.com/x.pdf"})])
    sms_id = result.deliveries["sms"]

    # when
    outcomes = deliver_channels(session_scope, {"email": (sms_id, _channels()["email"])},
                                Settings())

    # then: the email channel claims nothing; the SMS row is untouched
    assert outcomes["email"].claimed == 0
    assert _rows(sms_id) == {sms_id[0]: ("pending", None, 0)}


def test_a_channel_that_fails_leaves_the_others_sent_and_its_rows_leased(tenant: str) -> None:
    # given: an SMS provider that raises (a bug, not a provider answer)
    class Broken(SandboxChannel):
        def send_many(self, messages: Any) -> Any:
            raise RuntimeError("sms adapter bug")

    result = _ingest([event("label_created", tenant=tenant,
                            data={"label_url": "https://labels.example.com/y.pdf"})])
    chans = {**_channels(), "sms": Broken("sms", engine=get_engine())}
    batches = {ch: (ids, chans[ch]) for ch, ids in result.deliveries.items()}
    errors: list[tuple[str, str]] = []

    def carry_on(channel: str, exc: BaseException) -> bool:
        errors.append((channel, str(exc)))
        return True

    # when
    outcomes = deliver_channels(session_scope, batches, Settings(), on_error=carry_on)

    # then: the error is reported for SMS alone; email and in-app are sent and recorded;
    # the SMS row stays claimed under its lease (the sweeper's once it ends), never sent
    assert errors == [("sms", "sms adapter bug")]
    assert dict(outcomes["email"].states) == {"sent": 1}
    assert dict(outcomes["inapp"].states) == {"sent": 1}
    assert {st for st, _, _ in _rows(result.deliveries["email"]).values()} == {"sent"}
    assert {st for st, _, _ in _rows(result.deliveries["inapp"]).values()} == {"sent"}
    sms_state, sms_token, sms_attempts = _rows(result.deliveries["sms"])[result.deliveries["sms"][0]]
    assert (sms_state, sms_attempts) == ("sending", 0) and sms_token is not None

    # and without on_error, or when it says stop (the task's soft time limit), the error
    # propagates (a deliver task retries its message)
    for stop in (None, lambda _ch, _exc: False):
        again = _ingest([event("label_created", tenant=tenant,
                               data={"label_url": f"https://labels.example.com/z{stop}.pdf"})])
        with pytest.raises(RuntimeError, match="sms adapter bug"):
            deliver_channels(session_scope,
                             {ch: (ids, chans[ch]) for ch, ids in again.deliveries.items()},
                             Settings(), on_error=stop)


def test_a_batch_out_of_time_starts_no_call_and_hands_its_rows_back(tenant: str) -> None:
    # given: a task that started so long ago that its soft time limit (less a second and
    # one provider timeout) is already behind it when the batch is claimed
    import time

    settings = Settings()
    long_ago = time.monotonic() - settings.task_soft_time_limit_s - 60
    result = _ingest([event("label_created", tenant=tenant,
                            data={"label_url": "https://labels.example.com/late.pdf"})])
    batches = {ch: (ids, _channels()[ch]) for ch, ids in result.deliveries.items()}
    ids = sorted(i for i_s, _ in batches.values() for i in i_s)

    # when
    outcomes = deliver_channels(session_scope, batches, settings, started_at=long_ago)

    # then: no provider is called; every row waits to be claimed again at once, by a new
    # task, with no attempt spent (the claim's +1 is given back)
    assert {ch: o.claimed for ch, o in outcomes.items()} == {"email": 1, "sms": 1, "inapp": 1}
    assert sorted(i for o in outcomes.values() for i, _ in o.retry_soon) == ids
    with session_scope() as s:
        rows = s.execute(text("SELECT state, attempts, claim_token, last_error FROM deliveries "
                              "WHERE id = ANY(:ids)"), {"ids": ids}).all()
        calls = s.execute(text("SELECT count(*) FROM delivery_attempts "
                               "WHERE delivery_id = ANY(:ids)"), {"ids": ids}).scalar_one()
        sandboxed = s.execute(text("SELECT count(*) FROM sandbox_messages "
                                   "WHERE delivery_id = ANY(:ids)"), {"ids": ids}).scalar_one()
    assert {(st, n, tok) for st, n, tok, _ in rows} == {("retrying", 0, None)}
    assert all("time budget" in err for *_, err in rows)
    assert calls == 0 and sandboxed == 0

    # and when: a task with its whole budget ahead claims them
    again = deliver_channels(session_scope, batches, settings)

    # then: each goes out once
    assert {ch: dict(o.states) for ch, o in again.items()} == {
        "email": {"sent": 1}, "sms": {"sent": 1}, "inapp": {"sent": 1}}
