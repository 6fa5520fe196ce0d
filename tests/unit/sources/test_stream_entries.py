"""Stream entries from any producer: bytes that are not UTF-8 and JSON nested past the
parser's recursion limit are dead-lettered with a reason, never a crash of the listener."""

from __future__ import annotations

import pytest

from return_notify.sources.streams import Poison, _fields, decode_entry


def test_bytes_that_are_not_utf8_are_text_with_replacement_characters() -> None:
    fields = _fields({b"event": b'{"event_id": "\xff\xfe"}', b"\xc3(": b"x"})
    assert fields["event"] == '{"event_id": "\ufffd\ufffd"}'
    assert "\ufffd(" in fields


@pytest.mark.parametrize(("fields", "reason"), [
    ({"event": "[" * 50_000}, "nested too deeply"),
    ({"events": "[" * 3000 + "]" * 3000}, "nested too deeply"),
    ({"event": "{not json"}, "not valid JSON"),
    ({"nothing": "{}"}, "no 'event' or 'events' field"),
])
def test_entries_that_are_not_events_are_poison(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(Poison, match=reason):
        decode_entry(fields, 10_000_000)
