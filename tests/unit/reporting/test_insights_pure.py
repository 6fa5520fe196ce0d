"""The pure parts of the analysis: time bands, score summaries, ranking channels and what a
recommendation applies."""

from __future__ import annotations

import pytest

from return_notify.reporting.insights import (
    band_of,
    channels_to_apply,
    rank_channels,
    summarise_scores,
)
from return_notify.reporting.intervals import wilson


@pytest.mark.parametrize(("seconds", "band"), [
    (0.0, "< 1 min"), (59.9, "< 1 min"), (60.0, "< 1 h"), (3599.0, "< 1 h"),
    (3600.0, "< 1 day"), (86399.0, "< 1 day"), (86400.0, ">= 1 day"), (1e9, ">= 1 day"),
    (None, "no update")])
def test_bands(seconds: float | None, band: str) -> None:
    assert band_of(seconds) == band


def test_a_score_summary() -> None:
    s = summarise_scores([5, 4, 4, 2, 1])
    assert s["n"] == 5 and s["mean_score"]["value"] == 3.2
    assert s["satisfied_share"]["value"] == 0.6
    assert s["scores"] == {"1": 1, "2": 1, "3": 0, "4": 2, "5": 1}


def row(channel: str, tracked: int, clicked: int) -> dict[str, object]:
    return {"channel": channel, "tracked": tracked, "clicked": clicked,
            "click_rate": wilson(clicked, tracked).as_dict()}


def test_channels_rank_by_the_low_end_of_their_click_rate() -> None:
    # email's 50 % of 30 is less certain than SMS's 45 % of 400: SMS ranks first; in-app has
    # too few tracked notifications to rank at all
    ranked = rank_channels([row("email", 30, 15), row("sms", 400, 180), row("inapp", 5, 5)])
    assert ranked["order"] == ["sms", "email"]
    assert ranked["insufficient"] == [{"channel": "inapp", "tracked": 5}]
    assert ranked["clear_winner"] is False  # their intervals overlap
    clear = rank_channels([row("sms", 200, 120), row("email", 200, 20)])
    assert clear["order"] == ["sms", "email"] and clear["clear_winner"] is True
    assert rank_channels([row("sms", 10, 1)])["order"] == []


def test_what_a_recommendation_applies() -> None:
    assert channels_to_apply(["sms", "email", "inapp"], 1) == ["sms", "inapp"]
    assert channels_to_apply(["sms", "email", "inapp"], 2, keep_inapp=False) == ["sms", "email"]
    assert channels_to_apply(["inapp", "sms"], 1) == ["inapp"]
    with pytest.raises(ValueError, match="enough tracked"):
        channels_to_apply([], 2)
    with pytest.raises(ValueError):
        channels_to_apply(["sms"], 0)
