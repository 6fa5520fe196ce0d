"""The status page's text: every milestone has a headline in every page language, and each
state says what it should."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from return_notify.templating.links import MILESTONES
from return_notify.templating.status_page import (
    STATUS_STRINGS,
    StatusPage,
    Step,
    milestone_title,
    status_page,
)


@pytest.mark.parametrize("language", sorted(STATUS_STRINGS))
def test_every_milestone_has_a_headline_in_every_language(language: str) -> None:
    titles = {m: milestone_title(m, language) for m in MILESTONES}
    assert all(t and "_" not in t and "{" not in t for t in titles.values()), titles
    assert len(set(titles.values())) >= len(MILESTONES) - 1  # de: dispatched = in transit


def test_steps_that_read_the_same_are_one_line_with_the_later_date() -> None:
    early, late = datetime(2026, 5, 4, 8, tzinfo=UTC), datetime(2026, 5, 6, 8, tzinfo=UTC)
    html = status_page(StatusPage("status", "de", "Laden", "R-1", steps=(
        Step("shipment_dispatched", early), Step("in_transit", late))))
    assert html.count("<li") == 1 and "6. Mai" in html and "4. Mai" not in html


def test_the_strings_of_every_language_have_the_same_keys() -> None:
    keys = set(STATUS_STRINGS["en"])
    assert all(set(t) == keys for t in STATUS_STRINGS.values())


def test_each_state_says_what_it_should() -> None:
    at = datetime(2026, 5, 4, 12, 30, tzinfo=UTC)
    shown = status_page(StatusPage("status", "fr", "Maison", "R-1", steps=(
        Step("return_initiated", at), Step("exception", at))))
    assert "<h1>" + milestone_title("exception", "fr").replace("'", "&#39;") + "</h1>" in shown
    assert 'aria-current="step"' in shown and "Retour R-1 chez Maison." in shown
    no_steps = status_page(StatusPage("status", "en", "Acme", "R-1", current="restocked"))
    assert f"<h1>{milestone_title('restocked', 'en')}</h1>" in no_steps and "<ol>" not in no_steps
    assert "Return not found" in status_page(StatusPage("unknown", None, "Acme", "R-1"))
    invalid = status_page(StatusPage("invalid", "de", support_url="https://x.example"))
    assert "Link ungültig" in invalid and "x.example" not in invalid
    legacy = status_page(StatusPage("legacy", "xx", "<Acme>", "R-<1>"))
    assert "&lt;Acme&gt;" in legacy and "R-&lt;1&gt;" in legacy and 'lang="en"' in legacy
