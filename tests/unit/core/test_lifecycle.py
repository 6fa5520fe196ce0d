"""Lifecycle decisions: no stale "in transit" after "refund processed"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from return_notify.core.lifecycle import MAIN_LINE, Disposition, ReturnState, decide, supersedes
from return_notify.events import Milestone as M

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(("current", "incoming", "minutes", "expected"), [
    (None, M.IN_TRANSIT, 0, Disposition.NOTIFY),
    (M.LABEL_CREATED, M.SHIPMENT_DISPATCHED, 1, Disposition.NOTIFY),
    (M.REFUND_PROCESSED, M.IN_TRANSIT, -5, Disposition.STALE),
    (M.REFUND_PROCESSED, M.IN_TRANSIT, 5, Disposition.STALE),  # order beats clocks
    (M.IN_TRANSIT, M.IN_TRANSIT, 5, Disposition.NOTIFY),  # ETA update
    (M.IN_TRANSIT, M.IN_TRANSIT, -5, Disposition.STALE),  # older ETA
    (M.LABEL_CREATED, M.LABEL_CREATED, 5, Disposition.REPEAT),
    (M.RETURN_CANCELLED, M.REFUND_PROCESSED, 5, Disposition.STALE),
    (M.RETURN_COMPLETED, M.EXCEPTION, 5, Disposition.STALE),
    (M.IN_TRANSIT, M.EXCEPTION, 5, Disposition.NOTIFY),
    (M.WAREHOUSE_RECEIVED, M.EXCEPTION, -5, Disposition.STALE),
    (M.RETURN_INITIATED, M.RETURN_REJECTED, 5, Disposition.NOTIFY),
])
def test_decide(current: M | None, incoming: M, minutes: int, expected: Disposition) -> None:
    state = ReturnState(current, T0 if current else None)
    assert decide(state, incoming, at(minutes)).disposition is expected


def test_exception_never_moves_the_status() -> None:
    state = ReturnState(M.IN_TRANSIT, T0)
    assert decide(state, M.EXCEPTION, at(1)).new_state == state


def test_walking_the_main_line_in_order_notifies_every_step() -> None:
    state = ReturnState()
    for i, m in enumerate(MAIN_LINE):
        d = decide(state, m, at(i))
        assert d.notify, m
        state = d.new_state
    assert state.milestone is M.RETURN_COMPLETED


def test_any_shuffle_never_notifies_a_milestone_older_than_one_already_notified() -> None:
    import random

    rng = random.Random(3)
    for _ in range(200):
        order = list(MAIN_LINE)
        rng.shuffle(order)
        state, best = ReturnState(), -1
        for i, m in enumerate(order):
            d = decide(state, m, at(i))
            idx = MAIN_LINE.index(m)
            if d.notify:
                assert idx > best
                best = idx
            state = d.new_state


@pytest.mark.parametrize(("new", "old", "expected"), [
    (M.REFUND_PROCESSED, M.IN_TRANSIT, True),
    (M.IN_TRANSIT, M.IN_TRANSIT, True),
    (M.LABEL_CREATED, M.REFUND_PROCESSED, False),
    (M.EXCEPTION, M.IN_TRANSIT, False),
    (M.WAREHOUSE_RECEIVED, M.EXCEPTION, True),
])
def test_supersedes(new: M, old: M, expected: bool) -> None:
    assert supersedes(new, old) is expected
