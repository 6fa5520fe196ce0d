"""Customer satisfaction: one score (1-5) per return, from our rating links, the retailer's
API (``POST /v1/returns/{id}/satisfaction``) or a producer's ``return_completed`` event
(``data.satisfaction``).

Rules, in one statement so that concurrent clicks cannot break them:

* the same score again changes nothing (idempotent: a double click, a retried request);
* a customer (``link``) may change their own score for ``RSN_RATING_CHANGE_WINDOW_H``
  hours after their first rating, then it is final; a link never replaces a score the
  retailer set;
* the retailer (``api``, ``event``) may set or correct the score at any time: the latest
  wins, and it stays the retailer's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Source = Literal["link", "api", "event"]
Outcome = Literal["recorded", "changed", "unchanged", "locked"]
SATISFACTION_MILESTONE = "return_completed"  # the event that may carry data.satisfaction


@dataclass(frozen=True)
class Rating:
    """A return's score as stored, and whether (until when) its customer may change it."""

    return_pk: int
    score: int
    source: str
    first_rated_at: datetime
    rated_at: datetime
    changeable_until: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "source": self.source,
                "first_rated_at": self.first_rated_at.isoformat(),
                "rated_at": self.rated_at.isoformat(),
                "changeable_until": self.changeable_until.isoformat()
                if self.changeable_until else None}


@dataclass(frozen=True)
class RatingResult:
    outcome: Outcome
    rating: Rating


_UPSERT = text("""
INSERT INTO satisfaction_ratings AS s (tenant_id, return_pk, score, source, channel, milestone,
                                       first_rated_at, rated_at)
VALUES (:tid, :rpk, :score, :source, :channel, :milestone, :at, :at)
ON CONFLICT ON CONSTRAINT uq_satisfaction_ratings_return DO UPDATE
SET score = EXCLUDED.score, source = EXCLUDED.source, channel = EXCLUDED.channel,
    milestone = EXCLUDED.milestone, rated_at = EXCLUDED.rated_at, changes = s.changes + 1
WHERE s.score <> EXCLUDED.score
  AND (EXCLUDED.source <> 'link'
       OR (s.source = 'link' AND EXCLUDED.rated_at <= s.first_rated_at + make_interval(secs => :window)))
RETURNING (xmax = 0) AS inserted
""")
_SELECT = text("SELECT return_pk, score, source, first_rated_at, rated_at "
               "FROM satisfaction_ratings WHERE return_pk = ANY(CAST(:rpks AS bigint[]))")


def _rating(row: Any, window: timedelta, now: datetime | None) -> Rating:
    until = row.first_rated_at + window if row.source == "link" else None
    if until is not None and now is not None and until < now:
        until = None
    return Rating(int(row.return_pk), int(row.score), row.source, row.first_rated_at,
                  row.rated_at, until)


def current_rating(session: Session, return_pk: int, window_h: float,
                   now: datetime | None = None) -> Rating | None:
    """The stored score of a return (None: not rated); ``changeable_until`` is None when the
    customer can no longer change it (window over, or the retailer's score)."""
    row = session.execute(_SELECT, {"rpks": [return_pk]}).first()
    return _rating(row, timedelta(hours=window_h), now) if row is not None else None


def record_rating(session: Session, tenant_id: int, return_pk: int, score: int, *,
                  source: Source, at: datetime, window_h: float, channel: str | None = None,
                  milestone: str | None = None) -> RatingResult:
    """Store ``score`` for the return under the rules above (the caller commits)."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError("a score is a whole number from 1 to 5")
    window = timedelta(hours=window_h)
    before = session.execute(_SELECT, {"rpks": [return_pk]}).first()
    changed = session.execute(_UPSERT, {
        "tid": tenant_id, "rpk": return_pk, "score": score, "source": source,
        "channel": channel, "milestone": milestone, "at": at,
        "window": window.total_seconds()}).first()
    now = session.execute(_SELECT, {"rpks": [return_pk]}).one()
    rating = _rating(now, window, at)
    if changed is not None:
        return RatingResult("recorded" if changed.inserted else "changed", rating)
    same = before is not None and int(before.score) == score
    return RatingResult("unchanged" if same else "locked", rating)


def parse_score(raw: Any) -> int | None:
    """A score from an event's ``data.satisfaction``: ``4``, ``"4"`` or ``{"score": 4}``;
    None when it is not a whole number from 1 to 5."""
    if isinstance(raw, Mapping):
        raw = raw.get("score")
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 5:
        return None
    return raw


def record_event_ratings(session: Session, ratings: Iterable[tuple[int, int, Any, str]],
                         window_h: float, at: datetime | None = None) -> int:
    """Scores producers sent on ``return_completed`` events, as ``(tenant id, return pk,
    data.satisfaction, event id)``, rated ``at`` (default: now, when they reached us, as
    the API's default); a malformed one is skipped with a warning (the event itself is
    notified as usual). Returns how many scores were stored."""
    at = at or datetime.now(UTC)
    stored = 0
    for tenant_id, return_pk, raw, event_id in ratings:
        score = parse_score(raw)
        if score is None:
            log.warning("event %s: data.satisfaction ignored (%r is not a score from 1 to 5)",
                        event_id, raw if isinstance(raw, int | str) else type(raw).__name__)
            continue
        result = record_rating(session, tenant_id, return_pk, score, source="event", at=at,
                               window_h=window_h, milestone=SATISFACTION_MILESTONE)
        stored += result.outcome in ("recorded", "changed")
    return stored
