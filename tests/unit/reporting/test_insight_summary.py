"""Choosing the insights (``parse_parts``) and showing empty ones: the terminal tables and the
report's sections when nothing was rated or sent."""

from __future__ import annotations

from typing import Any

import pytest

from return_notify.reporting.html_insights import insight_sections
from return_notify.reporting.insight_summary import PARTS, parse_parts
from return_notify.reporting.tables import insight_tables


@pytest.mark.parametrize(("value", "parts"), [
    (None, PARTS), ("all", PARTS), ("", ()), ("none", ()), (" NONE ", ()),
    ("timing", ("timing",)), ("timing,effectiveness", ("effectiveness", "timing")),
    (["channels", "timing"], ("channels", "timing")), ("channels,,", ("channels",)),
])
def test_parts_are_chosen_in_their_order(value: Any, parts: tuple[str, ...]) -> None:
    assert parse_parts(value) == parts


@pytest.mark.parametrize("value", ["everything", "timing,astrology", "all,timing"])
def test_an_unknown_part_is_refused_with_the_accepted_ones(value: str) -> None:
    with pytest.raises(ValueError, match="use all, none or any of effectiveness, channels"):
        parse_parts(value)


EMPTY: dict[str, Any] = {
    "parts": list(PARTS), "limits": {"ratings": 5000, "notifications": 20000},
    "capped": {"effectiveness": False, "channels": False, "timing": False},
    "effectiveness": {"measure": "median", "by": None, "rated_returns": 0, "bands": [],
                      "groups": []},
    "channel_preference": {"channels": [], "recommendations": []},
    "time_split": [{"source": None, "channel": None, "n": 0,
                    "source_lag_s": {"avg": None, "p50": None, "p95": None},
                    "pipeline_s": {"avg": None, "p50": None, "p95": None},
                    "total_s": {"avg": None, "p50": None, "p95": None},
                    "upstream_share": None}],
}


def test_nothing_rated_or_sent_shows_empty_tables_not_an_error() -> None:
    # when
    tables = insight_tables(EMPTY)
    html = insight_sections(EMPTY)
    # then
    assert [t.title for t in tables] == [
        "Satisfaction by time to status update (0 rated)",
        "Satisfaction by number of updates (0 rated)", "Channel preference (rates, 95% CI)",
        "Recommended channel order (by click rate)",
        "Where the time goes: source lag vs pipeline (ours)"]
    assert [t.row_count for t in tables] == [0, 0, 0, 0, 1]
    assert "No rated returns in this window" in html
    assert 'id="table-time-split"' in html and 'id="table-channels"' in html
    assert 'id="insight-sample"' not in html  # nothing was capped
    assert insight_tables(None) == [] and insight_sections(None) == ""


def test_a_capped_read_says_so_in_the_report() -> None:
    capped = {**EMPTY, "capped": {"effectiveness": True, "channels": True, "timing": True}}
    html = insight_sections(capped)
    assert "Insights over the latest 5,000 ratings and the latest 20,000 notifications sent" \
        in html
