"""A database outage that outlasts a batch's lease: the outcomes of the calls already made
are parked in Redis and written before anything is claimed again, so nothing is sent twice
(real SendGrid SDK against the local SendGrid server, real PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from return_notify.channels.fakes.sendgrid_server import SendGridFakeServer
from return_notify.channels.registry import build_channel
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.deliver_record import apply_parked_outcomes
from return_notify.storage.db import session_scope
from return_notify.storage.redis import redis_client
from tests.helpers import uid
from tests.integration.pipeline.test_provider_rate_limits import email_ids, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid(svc: Any) -> Iterator[SendGridFakeServer]:
    with SendGridFakeServer() as sg:
        yield sg


class DatabaseGoesAway:
    """A session factory whose first session works (the claim) and every later one finds
    the database unreachable, as when PostgreSQL restarts mid-batch."""

    def __init__(self) -> None:
        self.opened = 0

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        self.opened += 1
        if self.opened > 1:
            raise OperationalError("UPDATE deliveries ...", {}, ConnectionRefusedError("down"))
        with session_scope() as s:
            yield s


def states(ids: list[int]) -> dict[str, int]:
    with session_scope() as s:
        rows = s.execute(text("SELECT state, count(*) FROM deliveries WHERE id = ANY(:i) "
                              "GROUP BY state"), {"i": ids}).all()
    return {st: n for st, n in rows}


def test_outcomes_outliving_the_lease_are_parked_and_written_before_the_next_claim(
        svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: a lease so short that the first failed write-back is already past it
    settings = settings_for(sendgrid, svc, lease_s=1.0)
    parked_key = f"{settings.redis_key_prefix}outcomes:parked"
    ids = email_ids(5, uid("t-"))
    channel = build_channel("email", settings)

    # when: the batch sends, and the database is gone when its outcomes are written
    with pytest.raises(OperationalError):
        deliver_batch(DatabaseGoesAway(), "email", ids, channel, settings)

    # then: the provider took every message, the rows still say 'sending' and the
    # outcomes wait in Redis
    assert len(sendgrid.mails()) == 5
    assert states(ids) == {"sending": 5}
    assert redis_client(settings).llen(parked_key) == 1

    # when: the lease has ended and the same ids are delivered again (the sweep's path)
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET lease_until = now() - interval '1 second' "
                       "WHERE id = ANY(:i)"), {"i": ids})
    again = deliver_batch(session_scope, "email", ids, channel, settings)

    # then: the parked outcomes went in first: all sent, nothing claimed, nothing resent
    assert again.claimed == 0
    assert states(ids) == {"sent": 5}
    assert len(sendgrid.mails()) == 5
    assert redis_client(settings).llen(parked_key) == 0
    with session_scope() as s:
        attempts = s.execute(text("SELECT outcome, count(*) FROM delivery_attempts "
                                  "WHERE delivery_id = ANY(:i) GROUP BY outcome"),
                             {"i": ids}).all()
    assert dict(attempts) == {"sent": 5}


def test_a_parked_entry_is_kept_while_the_database_is_still_away(
        svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: outcomes parked by a batch that outlived its lease
    settings = settings_for(sendgrid, svc, lease_s=1.0)
    parked_key = f"{settings.redis_key_prefix}outcomes:parked"
    ids = email_ids(2, uid("t-"))
    with pytest.raises(OperationalError):
        deliver_batch(DatabaseGoesAway(), "email", ids, build_channel("email", settings), settings)
    assert redis_client(settings).llen(parked_key) == 1

    # when: writing them meets the outage again
    def still_down() -> Any:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("down"))

    with pytest.raises(OperationalError):
        apply_parked_outcomes(still_down, settings)

    # then: the entry is still there, and goes in once the database answers
    assert redis_client(settings).llen(parked_key) == 1
    assert apply_parked_outcomes(session_scope, settings) == 2
    assert states(ids) == {"sent": 2}


def test_a_batch_stopped_mid_send_parks_what_it_has_not_written(
        svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: a channel whose batch is stopped (as by the task's time limit) after 3 sends
    settings = settings_for(sendgrid, svc)
    parked_key = f"{settings.redis_key_prefix}outcomes:parked"
    ids = email_ids(5, uid("t-"))
    channel = build_channel("email", settings)
    original = channel.iter_send
    known: list[int] = []

    def stopped_after_three(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for sent in original(*args, **kwargs):
            yield sent
            known.append(sent.message.delivery_id)
            if len(known) == 3:
                raise TimeoutError("the task's time limit")

    channel.iter_send = stopped_after_three  # type: ignore[method-assign]

    # when: the batch runs with the database up, and stops
    with pytest.raises(TimeoutError):
        deliver_batch(session_scope, "email", ids, channel, settings)

    # then: three outcomes are known (more calls may have been in flight in the pool)
    assert len(known) == 3
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET lease_until = now() - interval '1 second' "
                       "WHERE id = ANY(:i)"), {"i": ids})
    channel.iter_send = original  # type: ignore[method-assign]
    again = deliver_batch(session_scope, "email", ids, channel, settings)
    # then: once the lease ends, the three known outcomes are written first, so only the
    # two others are claimed (a call that was in flight at the stop is sent again) and
    # none of the three known ones is sent twice
    assert again.claimed == 2
    assert states(ids) == {"sent": 5}
    sent_ids = [str(m.body["custom_args"]["delivery_id"]) for m in sendgrid.mails()]
    for did in known:
        assert sent_ids.count(str(did)) == 1, (did, sent_ids)
    assert redis_client(settings).llen(parked_key) == 0
