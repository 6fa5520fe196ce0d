"""The v1 event contract: strict, with per-field errors."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from return_notify.errors import EventValidationError
from return_notify.events import Milestone, event_json_schema, parse_event
from tests.helpers import event


def fields(raw: object) -> list[str]:
    with pytest.raises(EventValidationError) as info:
        parse_event(raw)
    return [e["field"] for e in info.value.errors]


def test_a_complete_event_parses() -> None:
    ev = parse_event(event("refund_processed", data={"refund_amount": "10.00"}))
    assert ev.milestone is Milestone.REFUND_PROCESSED
    assert ev.customer.phone == "+14155550123"
    assert ev.occurred_at.tzinfo is not None


@pytest.mark.parametrize(("change", "field"), [
    ({"shipment_weight": "2kg"}, "shipment_weight"),
    ({"milestone": "teleported"}, "milestone"),
    ({"tenant": "Not A Slug!"}, "tenant"),
    ({"occurred_at": "2026-11-27T10:00:00"}, "occurred_at"),  # no offset
    ({"return_id": "x" * 65}, "return_id"),
    ({"event_id": ""}, "event_id"),
    ({"schema_version": 2}, "schema_version"),
])
def test_each_contract_breach_names_its_field(change: dict[str, object], field: str) -> None:
    assert fields({**event(), **change}) == [field]


@pytest.mark.parametrize(("customer", "field"), [
    ({"id": "c", "phone": "555-0100"}, "customer.phone"),
    ({"id": "c", "email": "not-an-email"}, "customer.email"),
    ({"id": "c", "locale": "english please"}, "customer.locale"),
    ({"id": "c", "timezone": "Mars/Olympus"}, "customer.timezone"),
    ({"id": "c", "nickname": "x"}, "customer.nickname"),
    ({"name": "no id"}, "customer.id"),
])
def test_customer_fields_are_checked(customer: dict[str, str], field: str) -> None:
    assert fields({**event(), "customer": customer}) == [field]


def test_unknown_field_message_is_explicit() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event({**event(), "colour": "red"})
    assert "unknown field" in info.value.errors[0]["message"]
    assert "colour" in str(info.value)


def test_non_objects_and_bad_json_are_rejected_clearly() -> None:
    assert fields("{not json") == ["(event)"]
    assert fields([1, 2]) == ["(event)"]
    assert fields(None) == ["(event)"]


def test_oversized_data_is_rejected() -> None:
    assert fields({**event(), "data": {"blob": "x" * 20_000}}) == ["data"]


def test_shipped_schema_file_matches_the_model() -> None:
    path = files("return_notify") / "schema" / "return-event-v1.json"
    assert json.loads(path.read_text()) == event_json_schema()
    schema = event_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"event_id", "tenant", "return_id", "milestone",
                                       "occurred_at", "customer"}


@pytest.mark.parametrize("zone", ["x" * 300, "America", "../etc/passwd", "/etc/localtime",
                                  "Europe/Berlin\x00", "UTC "])
def test_a_timezone_that_is_no_zone_name_is_a_field_error_not_a_crash(zone: str) -> None:
    # ZoneInfo("x" * 300) raised OSError (file name too long): a 500 on POST /v1/events
    assert fields({**event(), "customer": {"id": "c", "timezone": zone}}) == ["customer.timezone"]
    from return_notify.core.zones import find_zone

    assert find_zone(zone) is None and find_zone("Europe/Berlin") is not None


def test_the_quick_text_check_never_passes_what_the_detailed_walk_reports() -> None:
    """``parse_event`` walks an event path by path only when the quick check (every text
    searched at once) finds something: for random nested values, whenever the quick check
    passes, the detailed walk has nothing to report; bad text anywhere, keys included,
    and nesting past the limit are caught by the quick check."""
    import random

    from return_notify.events import MAX_DEPTH, _plainly_clean, _text_problems

    rng = random.Random(11)
    atoms = ["ok", "\x00", "\ud800", "a\udfffb", 1, None, 2.5]
    keys = ["k", "\x00k", "\udc00", 5]

    def value(depth: int) -> object:
        roll = rng.random()
        if depth > MAX_DEPTH + 2 or roll < 0.35:
            return rng.choice(atoms)
        if roll < 0.7:
            return {rng.choice(keys) if rng.random() < 0.15 else f"k{i}": value(depth + 1)
                    for i in range(rng.randint(0, 3))}
        return [value(depth + 1) for _ in range(rng.randint(0, 3))]

    flagged = 0
    for _ in range(5000):
        v = value(0)
        problems: list[dict[str, object]] = []
        _text_problems(v, "", 0, problems)
        if _plainly_clean(v):
            assert problems == [], v
        else:
            flagged += 1
        if problems:
            assert not _plainly_clean(v)
    assert 0 < flagged < 5000
    with pytest.raises(EventValidationError, match="NUL"):
        parse_event({"data": {"items": [{"deep": {"\x00": "x"}}]}})
