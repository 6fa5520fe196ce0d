"""JSON depth is measured without recursion and capped; json's own recursion limit is a
clean refusal, never a crash (1,500 nested brackets used to answer 500)."""

from __future__ import annotations

import pytest

from return_notify.api.limits import JsonTooDeep, json_depth, loads_limited


def test_depth_of_nested_values() -> None:
    assert json_depth(1, 5) == 0
    assert json_depth([], 5) == 1
    assert json_depth({"a": [{"b": []}]}, 5) == 4
    assert json_depth([[[[[[[]]]]]]], 3) == 4  # stops as soon as it passes the limit


@pytest.mark.parametrize("body", [b"[" * 1500 + b"]" * 1500, b"[" * 100_000,
                                  b'{"a":' * 40 + b"1" + b"}" * 40])
def test_too_deep_json_is_refused(body: bytes) -> None:
    with pytest.raises(JsonTooDeep):
        loads_limited(body, 32)


def test_ordinary_json_passes_and_broken_json_is_a_value_error() -> None:
    assert loads_limited(b'[{"a": [1, 2, {"b": null}]}]', 32) == [{"a": [1, 2, {"b": None}]}]
    with pytest.raises(ValueError):
        loads_limited(b"[1, 2", 32)
