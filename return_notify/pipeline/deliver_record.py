"""The deliver step's two writes: the claim (state check + lease + token) and the record
of what happened (one attempt row per provider call, each delivery's new state), fenced by
the claim token so that a late writer never overwrites a newer claim's outcome.

A batch is recorded in several small write-backs while its sends are still going out
(``Recorder``): a worker killed at any instant has at most the calls in flight (and none
recorded) to repeat when the lease ends, not the whole batch.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from return_notify.config.settings import Settings
from return_notify.pipeline import presend
from return_notify.pipeline.outcome_journal import Parked, apply_parked, park
from return_notify.storage.statements import Statement

log = logging.getLogger(__name__)

__all__ = ["Recorder", "Row", "apply_parked_outcomes", "claim", "write_outcomes"]

_CLAIM = Statement("""
WITH c AS (
    SELECT d.id, d.state AS prev_state
    FROM deliveries d
    WHERE d.id = ANY(CAST(:ids AS bigint[]))
      AND d.channel = ANY(CAST(:channels AS text[]))
      -- one CASE, not an OR of states: the planner then finds the rows by primary key
      -- (one partition each) whatever its statistics say about states
      AND CASE d.state
            WHEN 'pending' THEN true
            WHEN 'retrying' THEN d.next_attempt_at IS NULL
                                 OR d.next_attempt_at <= now() + interval '500 milliseconds'
            WHEN 'scheduled' THEN d.next_attempt_at IS NULL
                                  OR d.next_attempt_at <= now() + interval '500 milliseconds'
            WHEN 'sending' THEN d.lease_until < now()
            ELSE false END
    ORDER BY d.id
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d
SET state = 'sending', claim_token = :token, attempts = d.attempts + 1,
    lease_until = now() + make_interval(secs => :lease), updated_at = now()
FROM c, events e, returns r, tenants t
WHERE d.id = c.id AND d.id = ANY(CAST(:ids AS bigint[]))
  AND e.id = d.event_pk AND r.id = d.return_pk AND t.id = d.tenant_id
RETURNING d.id, d.channel, c.prev_state, d.milestone, d.recipient, d.locale, d.attempts, d.replays,
          d.occurred_at, d.tenant_id, e.payload, r.milestone AS current_milestone, t.slug,
          t.name, r.region, r.milestone_at AS current_at, d.template, d.urgency, d.created_at,
          -- the tenant's template revision: its cached templates are current if it matches
          coalesce((SELECT b.revision FROM tenant_branding b WHERE b.tenant_id = d.tenant_id),
                   0) AS branding_revision
""")

#: the attempt rows of a write-back, inserted by the same statement as the state update
_ATTEMPT_COLUMNS = ("delivery_id", "attempt_no", "started_at", "duration_ms", "outcome",
                    "provider", "provider_message_id", "error_class", "error_code",
                    "error_message")
_ATTEMPT_TYPES = ("bigint", "smallint", "timestamptz", "float8", "text", "text", "text", "text",
                  "text", "text")

_WRITE_BACK = Statement(f"""
WITH attempts AS (
    INSERT INTO delivery_attempts ({", ".join(_ATTEMPT_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"CAST(:a_{c} AS {t}[])"
                                    for c, t in zip(_ATTEMPT_COLUMNS, _ATTEMPT_TYPES, strict=True))})
)
UPDATE deliveries d
SET state = CASE WHEN v.state = 'sent' AND d.state IN ('delivered', 'failed') THEN d.state
                 ELSE v.state END,  -- a provider webhook got there first: keep its news
    next_attempt_at = v.next_at, provider = v.provider,
    attempts = d.attempts - CASE WHEN v.throttled THEN 1 ELSE 0 END,
    provider_message_id = COALESCE(v.pmid, d.provider_message_id),
    subject = COALESCE(v.subject, d.subject), body = COALESCE(v.body, d.body),
    last_error = v.err, skip_reason = v.skip,
    sent_at = CASE WHEN v.state = 'sent' THEN COALESCE(v.sent_at, now()) ELSE d.sent_at END,
    lease_until = NULL, claim_token = NULL, updated_at = now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:next_ats AS timestamptz[]),
            CAST(:providers AS text[]), CAST(:pmids AS text[]), CAST(:subjects AS text[]),
            CAST(:bodies AS text[]), CAST(:errs AS text[]), CAST(:skips AS text[]),
            CAST(:throttled AS boolean[]), CAST(:sent_ats AS timestamptz[]),
            array_fill(CAST(:token AS text), ARRAY[cardinality(CAST(:ids AS bigint[]))]))
     AS v(id, state, next_at, provider, pmid, subject, body, err, skip, throttled, sent_at,
          token)
-- the token fence joins v instead of filtering d: filtered by a constant token, d was
-- estimated at one row, and the plan scanned the whole of v again for each of d's rows
-- (quadratic in the batch; 40 % of a 64-row write-back)
WHERE d.id = v.id AND d.id = ANY(CAST(:ids AS bigint[])) AND d.claim_token = v.token
""")


@dataclass
class Row:
    """What the write-back sets on one claimed delivery."""

    id: int
    state: str = ""
    next_at: datetime | None = None
    provider: str | None = None
    pmid: str | None = None
    subject: str | None = None
    body: str | None = None
    err: str | None = None
    skip: str | None = None
    #: the try is not counted (held back, paused, rate limited by the provider)
    throttled: bool = False
    sent_at: datetime | None = None


def claim(session: Session, channels: str | list[str], ids: list[int], lease_s: float
          ) -> tuple[str, list[Any]]:
    """Claim the due deliveries among ``ids`` of ``channels`` (one or several; an id of
    another channel is never claimed): (claim token, claimed rows, each with its
    ``channel``)."""
    token = str(uuid.uuid4())
    names = [channels] if isinstance(channels, str) else list(channels)
    rows = _CLAIM.rows(session, {"ids": ids, "channels": names, "token": token,
                                 "lease": lease_s})
    return token, rows


@dataclass
class Recorder:
    """Records a claimed batch's outcomes in small transactions as they become known.

    ``add`` queues a settled row (with its attempt row, if a provider was called); ``flush``
    writes what is queued in one transaction: attempt rows, the rows' new states, the SMS
    opt-outs providers reported and the email fallbacks of undeliverable SMS (their ids
    collected in ``fallback_email`` for the caller to enqueue). A flush that meets a
    database outage is retried until the lease is about to end: the calls happened, and
    until the lease ends nobody else may claim these rows, so retrying cannot race a resend.
    """

    session_factory: Callable[[], Any]
    token: str
    settings: Settings
    deadline: float  # time.monotonic() after which a failing flush gives up
    rows: list[Row] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    opted_out: list[tuple[int, str]] = field(default_factory=list)
    fallback: list[int] = field(default_factory=list)
    fallback_email: list[int] = field(default_factory=list)
    #: provider calls whose outcome is queued but not yet written
    unrecorded_calls: int = 0
    flushes: int = 0
    #: time.monotonic() of the last write-back (or of the recorder's start)
    written_at: float = field(default_factory=time.monotonic)

    def add(self, row: Row, attempt: dict[str, Any] | None = None) -> None:
        self.rows.append(row)
        if attempt is not None:
            self.attempts.append(attempt)
            self.unrecorded_calls += 1

    def flush(self) -> None:
        if not self.rows and not self.attempts:
            return
        rows = self.rows
        entry = self._entry()
        delay_s = 0.2
        failing = False
        try:
            while True:
                try:
                    with self.session_factory() as session:
                        created = write_outcomes(session, entry, self.settings)
                    break
                except OperationalError:
                    failing = True
                    if time.monotonic() + delay_s >= self.deadline:
                        # the lease is ending: keep the outcomes where the next claim or
                        # sweep writes them first, then give the batch up (its unsent rows
                        # are claimed again once the lease ends)
                        if park(self.settings, entry):
                            self._clear()
                        raise
                    log.warning("recording %d delivery outcomes failed (database "
                                "unreachable); retrying in %.1fs", len(rows), delay_s)
                    time.sleep(delay_s)
                    delay_s = min(2.0, delay_s * 2)
        except OperationalError:
            raise
        except BaseException:
            # the task's time limit (or a shutdown) while the database is away: the calls
            # happened, so their outcomes are parked rather than dropped
            if failing and park(self.settings, entry):
                self._clear()
            raise
        self.fallback_email += created
        self._clear()
        self.flushes += 1
        self.written_at = time.monotonic()

    def abandon(self) -> None:
        """The batch stops early (its time limit, a shutdown): park what is queued but not
        written, so the next claim or sweep records it instead of sending it again."""
        if (self.rows or self.attempts) and park(self.settings, self._entry()):
            self._clear()

    def _entry(self) -> Parked:
        """What is queued, as one write-back (the fenced UPDATE's parameters and the rest)."""
        rows = self.rows
        params = {
            "token": self.token,
            "ids": [r.id for r in rows], "states": [r.state for r in rows],
            "next_ats": [r.next_at for r in rows], "providers": [r.provider for r in rows],
            "pmids": [r.pmid for r in rows], "subjects": [r.subject for r in rows],
            "bodies": [r.body for r in rows], "errs": [r.err for r in rows],
            "skips": [r.skip for r in rows], "throttled": [r.throttled for r in rows],
            "sent_ats": [r.sent_at for r in rows],
        }
        return Parked(params, self.attempts, self.opted_out, self.fallback)

    def _clear(self) -> None:
        self.rows, self.attempts, self.opted_out, self.fallback = [], [], [], []
        self.unrecorded_calls = 0


def write_outcomes(session: Session, entry: Parked, settings: Settings) -> list[int]:
    """One write-back in ``session``: attempt rows, the fenced state update, opt-outs and
    SMS-to-email fallbacks; the ids of the email deliveries the fallbacks created."""
    # the attempt rows and the fenced update: one statement, one round trip
    attempts = {f"a_{c}": [a.get(c) for a in entry.attempts] for c in _ATTEMPT_COLUMNS}
    _WRITE_BACK.run(session, {**entry.params, **attempts})
    for tid, rcpt in entry.opted_out:
        presend.record_opt_out(session, tid, rcpt, settings)
    return list(presend.fall_back_to_email(session, entry.fallback, settings))


def apply_parked_outcomes(session_factory: Callable[[], Any], settings: Settings) -> int:
    """Write the outcomes parked in Redis during a database outage (``outcome_journal``)
    before anything is claimed again; how many rows."""
    return apply_parked(session_factory, settings,
                        lambda session, entry: write_outcomes(session, entry, settings))
