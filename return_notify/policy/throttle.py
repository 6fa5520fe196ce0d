"""Throttle and digest: when a new delivery of a return may go out (``plan``, pure).

Built on the existing delivery states, nothing new to send or to sweep:

* **throttle**: a minimum interval per return and channel, keyed ``milestone:channel``
  (measured since the last message of that milestone, e.g. ``in_transit:sms`` = 6 h: at
  most one ETA SMS per 6 hours) or ``*:channel`` (since the last message of any milestone);
* **digest**: with a window W for a channel, a delivery opens a group due at now + W, and
  every later delivery of that return and channel joins the group's due time. Each is
  ``scheduled`` (``next_attempt_at`` = due, ``skip_reason`` = why); when a newer milestone
  arrives, the older waiting ones are *stale* (``is_stale``) and skipped, at ingest and
  again at claim, so the group sends one message about the latest state, never a stale one;
* **quiet hours** (``quiet_hours.py``) then move the due time out of the recipient's night.

A ``pending`` plan means "send now"; the sweeper enqueues ``scheduled`` ones when due.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.lifecycle import RANK, supersedes
from return_notify.events import Milestone
from return_notify.policy.quiet_hours import Window, next_allowed_all

# hold reasons, stored in ``deliveries.skip_reason`` of a ``scheduled`` row (cleared on send)
DIGEST, THROTTLE, QUIET_HOURS = "digest", "throttle", "quiet_hours"
PENDING, SCHEDULED = "pending", "scheduled"
CHANNELS = ("email", "sms", "inapp")
#: an exception joins an open digest group (sent with it, after it) but never opens one
DIGEST_JOIN_ONLY = frozenset({Milestone.EXCEPTION})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """``"6h"``, ``"90s"``, ``"2m"``, ``120`` → seconds."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.fullmatch(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 90s, 2m, 6h")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _check_key(key: str) -> str:
    milestone, sep, channel = key.partition(":")
    if not sep or channel not in CHANNELS or (milestone != "*" and milestone not in
                                              {m.value for m in Milestone}):
        raise ValueError(f"{key!r}: use milestone:channel or *:channel, e.g. in_transit:sms")
    return key


class ThrottleConfig(BaseModel):
    """Minimum intervals and digest windows (seconds; the API also takes ``"6h"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_interval_s: dict[str, float] = Field(
        default_factory=dict, description="{'in_transit:sms': 21600, '*:sms': 600}")
    digest_window_s: dict[str, float] = Field(
        default_factory=dict, description="{'email': 120, 'sms': 120, 'inapp': 120}")

    @field_validator("min_interval_s", mode="before")
    @classmethod
    def _intervals(cls, v: Any) -> dict[str, float]:
        return {_check_key(str(k)): parse_duration(d) for k, d in dict(v or {}).items()}

    @field_validator("digest_window_s", mode="before")
    @classmethod
    def _digest(cls, v: Any) -> dict[str, float]:
        out = {str(k): parse_duration(d) for k, d in dict(v or {}).items()}
        bad = sorted(set(out) - set(CHANNELS))
        if bad:
            raise ValueError(f"unknown channel(s) {bad}: use email, sms, inapp")
        return out

    @classmethod
    def from_spec(cls, intervals: str, digest: str) -> ThrottleConfig:
        """From settings strings: ``"in_transit:sms=6h,*:sms=10m"`` and ``"sms=2m,email=2m"``."""
        return cls.model_validate({"min_interval_s": parse_pairs(intervals),
                                   "digest_window_s": parse_pairs(digest)})

    def lookback_s(self) -> float:
        return max([*self.min_interval_s.values(), *self.digest_window_s.values(), 0.0])


def parse_pairs(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r}: use key=duration")
        out[key.strip()] = value.strip()
    return out


@dataclass
class History:
    """What a return's customer already got, or will get, on one channel."""

    last_any: datetime | None = None
    last_by_milestone: dict[str, datetime] = field(default_factory=dict)
    digest_due: datetime | None = None  # due time of the open digest group, if any

    def note_sent(self, milestone: str, at: datetime) -> None:
        if self.last_any is None or at > self.last_any:
            self.last_any = at
        prev = self.last_by_milestone.get(milestone)
        if prev is None or at > prev:
            self.last_by_milestone[milestone] = at


@dataclass(frozen=True)
class Plan:
    state: str  # "pending" (send now) or "scheduled"
    at: datetime | None = None
    reason: str | None = None


SEND_NOW = Plan(PENDING)


def plan(
    *, now: datetime, milestone: Milestone | str, channel: str, history: History,
    throttle: ThrottleConfig, quiet: Window | None = None, zones: Iterable[str] = (),
) -> Plan:
    """Send now, or hold until when and why (pure). ``quiet`` is the recipient's allowed
    window when quiet hours apply to this channel and milestone, None otherwise."""
    m = Milestone(milestone)
    due, reason = now, None
    window = throttle.digest_window_s.get(channel, 0.0)
    if window > 0:
        if history.digest_due is not None and history.digest_due > now:
            due, reason = history.digest_due, DIGEST
        elif m not in DIGEST_JOIN_ONLY:
            due, reason = now + timedelta(seconds=window), DIGEST
    for key, last in ((f"{m.value}:{channel}", history.last_by_milestone.get(m.value)),
                      (f"*:{channel}", history.last_any)):
        interval = throttle.min_interval_s.get(key)
        if interval and last is not None and last + timedelta(seconds=interval) > due:
            due, reason = last + timedelta(seconds=interval), THROTTLE
    if quiet is not None:
        later = next_allowed_all(due, zones, quiet)
        if later is not None:
            due, reason = later, QUIET_HOURS
    return SEND_NOW if due <= now or reason is None else Plan(SCHEDULED, due, reason)


def remember(history: History, p: Plan, milestone: str, now: datetime) -> None:
    """Fold a plan into the batch's in-memory history (events of one batch see each other)."""
    if p.state == PENDING:
        history.note_sent(milestone, now)
    elif p.reason == DIGEST:
        history.digest_due = p.at


def is_stale(
    milestone: Milestone | str, occurred_at: datetime | None,
    current: Milestone | str | None, current_at: datetime | None,
) -> bool:
    """Whether a waiting delivery about (milestone, occurred_at) is out of date, given the
    return's current (milestone, milestone_at). Unlike ``lifecycle.supersedes`` alone, the
    delivery about the current state itself is never stale (a scheduled ``in_transit`` is
    not superseded by itself), and an exception is stale only once a main-line milestone
    happened after it."""
    if current is None:
        return False
    m, cur = Milestone(milestone), Milestone(current)
    if m is cur and occurred_at is not None and occurred_at == current_at:
        return False
    if m is Milestone.EXCEPTION:
        return (RANK[cur] > 0 and occurred_at is not None and current_at is not None
                and current_at > occurred_at)
    if m is cur and occurred_at is not None and current_at is not None and occurred_at > current_at:
        return False
    return supersedes(cur, m)


_HISTORY = text("""
SELECT return_pk, channel, milestone, state, skip_reason, next_attempt_at,
       coalesce(sent_at, created_at) AS at
FROM deliveries
WHERE return_pk = ANY(CAST(:rpks AS bigint[]))
  AND state IN ('pending', 'sending', 'sent', 'delivered', 'retrying', 'scheduled')
  AND (created_at > now() - make_interval(secs => :lookback) OR state = 'scheduled')
""")


def load_histories(
    session: Session, return_pks: Iterable[int], lookback_s: float, now: datetime,
) -> dict[tuple[int, str], History]:
    """Per (return pk, channel): last messages and the open digest group, in one query."""
    out: dict[tuple[int, str], History] = defaultdict(History)
    rpks = sorted(set(return_pks))
    if not rpks:
        return out
    for rpk, ch, m, state, hold, due, at in session.execute(
            _HISTORY, {"rpks": rpks, "lookback": lookback_s}):
        h = out[(rpk, ch)]
        if state == SCHEDULED:
            if hold == DIGEST and due is not None and due > now and (
                    h.digest_due is None or due > h.digest_due):
                h.digest_due = due
            continue
        h.note_sent(m, at)
    return out
