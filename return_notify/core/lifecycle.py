"""Milestone order and the pure decisions made on each event: notify, stale, repeat.

No I/O here: ingest loads the return's current state, asks ``decide`` and stores the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from return_notify.events import Milestone

MAIN_LINE: tuple[Milestone, ...] = (
    Milestone.RETURN_INITIATED,
    Milestone.RETURN_APPROVED,
    Milestone.LABEL_CREATED,
    Milestone.SHIPMENT_DISPATCHED,
    Milestone.IN_TRANSIT,
    Milestone.WAREHOUSE_RECEIVED,
    Milestone.INSPECTION_COMPLETED,
    Milestone.RESTOCKED,
    Milestone.REFUND_PROCESSED,
    Milestone.RETURN_COMPLETED,
)
TERMINAL: frozenset[Milestone] = frozenset(
    {Milestone.RETURN_COMPLETED, Milestone.RETURN_REJECTED, Milestone.RETURN_CANCELLED}
)
REPEATABLE: frozenset[Milestone] = frozenset({Milestone.IN_TRANSIT})

_TERMINAL_RANK = 100
RANK: dict[Milestone, int] = {m: (i + 1) * 10 for i, m in enumerate(MAIN_LINE)}
RANK[Milestone.RETURN_REJECTED] = _TERMINAL_RANK
RANK[Milestone.RETURN_CANCELLED] = _TERMINAL_RANK
RANK[Milestone.RETURN_COMPLETED] = _TERMINAL_RANK
RANK[Milestone.EXCEPTION] = 0  # off the line: never moves the return's status


class Disposition(StrEnum):
    """What ingest did with an accepted (non-duplicate) event."""

    NOTIFY = "notified"  # advances (or repeats a repeatable) milestone: notify
    STALE = "stale"  # older in lifecycle order than the return's status: record only
    REPEAT = "repeat"  # same non-repeatable milestone again under a new event id: record only
    NO_CHANNEL = "no_channel"  # notifiable, but no rule/contact yields a channel


@dataclass(frozen=True)
class ReturnState:
    """The return as ingest knows it: its current main-line milestone and when it happened."""

    milestone: Milestone | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    disposition: Disposition
    new_state: ReturnState
    reason: str

    @property
    def notify(self) -> bool:
        return self.disposition is Disposition.NOTIFY


def rank(milestone: Milestone | str) -> int:
    return RANK[Milestone(milestone)]


def decide(state: ReturnState, milestone: Milestone, occurred_at: datetime) -> Decision:
    """Decide what an event means for a return, given the return's state before it.

    * first event of a return, or a later milestone: notify and advance;
    * ``in_transit`` again with a newer ``occurred_at``: notify (an ETA update);
    * an earlier milestone, an older repeat, or anything after a terminal status: stale;
    * ``exception``: notify unless it predates the current status or the return is closed.
    """
    current = state.milestone
    if milestone is Milestone.EXCEPTION:
        if current in TERMINAL:
            return Decision(Disposition.STALE, state, f"return already {current}")
        if state.occurred_at is not None and occurred_at < state.occurred_at:
            return Decision(Disposition.STALE, state, f"exception predates {current}")
        return Decision(Disposition.NOTIFY, state, "exception")
    advanced = ReturnState(milestone, occurred_at)
    if current is None:
        return Decision(Disposition.NOTIFY, advanced, "first event of this return")
    if current in TERMINAL:
        return Decision(Disposition.STALE, state, f"return already {current}")
    new_rank, cur_rank = RANK[milestone], RANK[current]
    if new_rank > cur_rank:
        return Decision(Disposition.NOTIFY, advanced, f"{current} -> {milestone}")
    if new_rank < cur_rank:
        return Decision(Disposition.STALE, state, f"{milestone} is older than {current}")
    if milestone in REPEATABLE:
        if state.occurred_at is None or occurred_at > state.occurred_at:
            return Decision(Disposition.NOTIFY, advanced, f"{milestone} update")
        return Decision(Disposition.STALE, state, f"older {milestone} update")
    return Decision(Disposition.REPEAT, state, f"{milestone} already notified")


def supersedes(new: Milestone | str, old: Milestone | str) -> bool:
    """True when a waiting notification about ``old`` is out of date once ``new`` happened."""
    new_m, old_m = Milestone(new), Milestone(old)
    if old_m is Milestone.EXCEPTION:
        return new_m is not Milestone.EXCEPTION and RANK[new_m] > 0
    if new_m is Milestone.EXCEPTION:
        return False
    if RANK[new_m] > RANK[old_m]:
        return True
    return new_m is old_m and new_m in REPEATABLE
