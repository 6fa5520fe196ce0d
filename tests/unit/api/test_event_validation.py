"""Event validation for `POST /v1/events`: one or many, the tenant's own only, every bad one named, limits."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from return_notify.api.events import MAX_EVENTS, validate_events


def _ev(tenant: str = "acme", **over: object) -> dict[str, object]:
    ev: dict[str, object] = {"event_id": "e1", "tenant": tenant, "return_id": "R1",
                             "milestone": "return_approved",
                             "occurred_at": "2026-01-01T10:00:00+00:00", "customer": {"id": "c"}}
    ev.update(over)
    return ev


def test_validate_events_accepts_one_object_or_an_array() -> None:
    assert [p["event_id"] for p in validate_events(_ev(), "acme")] == ["e1"]
    assert len(validate_events([_ev(event_id="a"), _ev(event_id="b")], "acme")) == 2


def test_validate_events_foreign_tenant_is_403() -> None:
    with pytest.raises(HTTPException) as info:
        validate_events([_ev(), _ev(tenant="other")], "acme")
    assert info.value.status_code == 403 and "index 1" in str(info.value.detail)


def test_validate_events_collects_every_bad_event() -> None:
    with pytest.raises(HTTPException) as info:
        validate_events([_ev(milestone="nope"), _ev(), "{\"event_id\": \"x\"}", 5], "acme")
    assert info.value.status_code == 422
    assert [d["index"] for d in info.value.detail] == [0, 2, 3]  # type: ignore[union-attr]


def test_validate_events_limits() -> None:
    for body in ([], [_ev()] * (MAX_EVENTS + 1)):
        with pytest.raises(HTTPException) as info:
            validate_events(body, "acme")
        assert info.value.status_code == 422
