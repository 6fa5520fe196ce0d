"""The satisfaction page: every state in every language, escaped, and the tenant's switches
as the CLI and the API validate them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from return_notify.templating.link_settings import InsightsSettings
from return_notify.templating.pages import PAGE_STRINGS, RatingPage, rating_page


@pytest.mark.parametrize("lang", sorted(PAGE_STRINGS))
def test_every_language_has_every_string(lang: str) -> None:
    assert set(PAGE_STRINGS[lang]) == set(PAGE_STRINGS["en"])


@pytest.mark.parametrize(("state", "form", "status"), [
    ("ask", True, False), ("confirm", True, True), ("thanks", True, True),
    ("final", False, True), ("invalid", False, False)])
def test_each_state(state: str, form: bool, status: bool) -> None:
    until = datetime(2026, 3, 9, 12, tzinfo=UTC) if state == "thanks" else None
    html = rating_page(RatingPage(state, "de", "Nordhaus", "RMA-7", 4, until,  # type: ignore[arg-type]
                                  "#123456", "/rate/tok"))
    assert ('<form method="post" action="/rate/tok">' in html) is form
    assert ('role="status"' in html) is status
    assert '<html lang="de"' in html and "<script" not in html
    if form:
        assert html.count('name="score"') == 5
        assert 'aria-label="5 von 5 – Sehr zufrieden"' in html
    if state == "thanks":
        assert "Ihre Bewertung: 4 von 5." in html and "Mo., 9. März" in html


def test_values_are_escaped_and_an_unknown_language_is_english() -> None:
    html = rating_page(RatingPage("ask", "it", '<script>alert("x")</script>', "R<1>",
                                  brand_color="red;}body{x", action="/rate/t"))
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "R&lt;1&gt;" in html
    assert '<html lang="en"' in html and "How did we do?" in html
    assert "red;}" not in html  # not a colour: the default


def test_the_switches_validate_their_milestones() -> None:
    s = InsightsSettings(survey=True, survey_milestones="refund_processed, return_completed")
    assert s.survey_milestones == ("refund_processed", "return_completed")
    assert s.rated_milestones() == {"refund_processed", "return_completed"}
    assert InsightsSettings(survey=False).rated_milestones() == frozenset()
    assert InsightsSettings() == InsightsSettings(tracking=False, survey=False,
                                                  survey_milestones=["return_completed"])
    for bad in (["return_approved"], [], "in_transit"):
        with pytest.raises(ValidationError):
            InsightsSettings(survey_milestones=bad)
    with pytest.raises(ValidationError):
        InsightsSettings(tracking=True, sampling=0.5)  # type: ignore[call-arg]
