"""Tracked and rating links: sealed tokens that name a notification (never a URL), and the
renderer putting them into messages only where a tenant's switches say so."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from return_notify.templating.links import (
    MILESTONES,
    InvalidLinkError,
    LinkTarget,
    MessageLinks,
    link_key,
    open_token,
    scored_urls,
    seal,
)
from return_notify.templating.render import render
from return_notify.templating.samples import sample_context

KEY = link_key("a secret for the unit tests")
BASE = "https://notify.example.com"


def links(tracking: bool = True, survey: tuple[str, ...] = ("return_completed",)) -> MessageLinks:
    return MessageLinks(42, BASE, KEY, tracking, frozenset(survey))


@pytest.mark.parametrize("target", [
    LinkTarget("click", 1, "RMA-1", "label_created", "sms", "en"),
    LinkTarget("rating", 2**40, "R" * 64, "return_completed", "email", "de"),
    LinkTarget("click", 300, "ré-ünïcode", "exception", "inapp", None),
])
def test_a_token_opens_to_what_was_sealed(target: LinkTarget) -> None:
    token = seal(target, KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert open_token(token, KEY) == target


def test_tokens_are_short_deterministic_and_hide_the_return() -> None:
    target = LinkTarget("rating", 7, "RMA-100042", "return_completed", "sms", "en")
    token = seal(target, KEY)
    assert seal(target, KEY) == token  # the same link in a re-render
    assert len(token) <= 48  # 16 bytes of tag + 4 of header + the reference, base64
    assert "RMA" not in token and "100042" not in token


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # altered
    lambda t: t[:10],  # truncated
    lambda t: "x" + t,  # not base64 of a sealed payload
    lambda t: seal(LinkTarget("click", 1, "RMA-1", "in_transit", "sms"), link_key("other")),
    lambda t: "",
    lambda t: "A" * 500,
])
def test_a_forged_or_altered_token_is_refused(mangle: object) -> None:
    token = seal(LinkTarget("click", 1, "RMA-1", "in_transit", "sms"), KEY)
    with pytest.raises(InvalidLinkError):
        open_token(mangle(token), KEY)  # type: ignore[operator]


def test_milestone_indexes_are_pinned() -> None:
    # tokens in messages already sent must keep opening: append, never reorder
    assert MILESTONES[:3] == ("return_initiated", "return_approved", "label_created")
    assert MILESTONES[12] == "exception" and len(MILESTONES) == 13


def _status_target(links_out: dict[str, object]) -> LinkTarget:
    url = links_out["status_url"]
    assert isinstance(url, str) and url.startswith(f"{BASE}/s/")
    return open_token(url.rsplit("/", 1)[1], KEY)


def _beyond_status(links_out: object) -> dict[str, object]:
    assert isinstance(links_out, Mapping)
    return {k: v for k, v in links_out.items() if k != "status_url"}


def test_what_each_channel_gets() -> None:
    m = links()
    sms = dict(m.for_message("sms", "return_completed", "RMA-1", ("fr-CA", "fr", "en")))
    assert set(sms) == {"status_url", "cta_url", "rating_url"}
    assert _status_target(sms) == LinkTarget("status", 42, "RMA-1", "return_completed", "sms",
                                             "fr")
    assert open_token(sms["cta_url"].rsplit("/", 1)[1], KEY) == LinkTarget(
        "click", 42, "RMA-1", "return_completed", "sms", "fr")
    email = m.for_message("email", "return_completed", "RMA-1", ("en",))
    assert set(email) == {"status_url", "rating_url", "rating_urls"}  # clicks: the provider's
    assert [s for s, _ in email["rating_urls"]] == [1, 2, 3, 4, 5]
    inapp = m.for_message("inapp", "return_completed", "RMA-1", ("en",))
    assert _beyond_status(inapp) == {}  # tracking and rating: the inbox API
    assert _beyond_status(m.for_message("sms", "in_transit", "RMA-1", ("en",))).keys() == {
        "cta_url"}
    assert _beyond_status(links(tracking=False).for_message("sms", "in_transit", "RMA-1",
                                                            ("en",))) == {}
    assert _beyond_status(links(survey=()).for_message("email", "return_completed", "RMA-1",
                                                       ("en",))) == {}
    assert m.for_message("sms", "return_completed", None, ("en",)) == {}
    chosen = m.for_message("sms", "in_transit", "RMA-1", ("it-IT", "it", "de", "en"))
    assert open_token(chosen["cta_url"].rsplit("/", 1)[1], KEY).language == "de"
    assert scored_urls("https://x/rate/t", (1, 5)) == [(1, "https://x/rate/t?score=1"),
                                                       (5, "https://x/rate/t?score=5")]


def test_the_status_page_is_the_call_to_action_only_where_it_was_the_default() -> None:
    off = links(tracking=False, survey=())
    own = off.for_message("email", "label_created", "RMA-1", ("en",), default_cta=False)
    assert own.keys() == {"status_url"}  # the label link stays the call to action
    default = off.for_message("email", "refund_processed", "RMA-1", ("en",), default_cta=True)
    assert default["cta_url"] == default["status_url"]
    tracked = links().for_message("sms", "refund_processed", "RMA-1", ("en",), default_cta=True)
    assert f"{BASE}/r/" in tracked["cta_url"]  # tracking wins: the click leads to the page


@pytest.mark.parametrize("locale", ["en-US", "de-DE", "fr-FR", "es-ES", "it-IT"])
def test_a_rendered_final_message_carries_the_rating_in_its_language(locale: str) -> None:
    ctx = sample_context("return_completed", locale=locale)
    email = render("email", "return_completed", ctx, links=links())
    sms = render("sms", "return_completed", sample_context("return_completed", locale=locale),
                 links=links())
    urls = re.findall(rf'href="({BASE}/rate/[^"?]+)\?score=(\d)"', email.html or "")
    assert [s for _, s in urls] == ["1", "2", "3", "4", "5"]
    token = open_token(urls[0][0].rsplit("/", 1)[1], KEY)
    expected = locale[:2] if locale[:2] in ("en", "de", "fr", "es") else "en"
    assert token.language == expected
    assert f"{BASE}/rate/" in email.text  # the plain-text part: one link to the page
    assert sms.text.count(f"{BASE}/rate/") == 1 and sms.text.count(f"{BASE}/r/") == 1


def test_with_the_switches_off_only_the_status_link_changes_and_it_is_sealed() -> None:
    ctx = sample_context("return_completed", locale="de-DE")
    plain = render("email", "return_completed", ctx)
    off = render("email", "return_completed", sample_context("return_completed", locale="de-DE"),
                 links=links(tracking=False, survey=()))
    unsealed = ctx["status_url"]
    assert unsealed in plain.text and unsealed not in off.text
    sealed = re.findall(rf"{BASE}/s/[A-Za-z0-9_-]+", off.text)
    assert sealed and open_token(sealed[0].rsplit("/", 1)[1], KEY) == LinkTarget(
        "status", 42, ctx["return_id"], "return_completed", "email", "de")
    assert off.cta_url == sealed[0]  # return_completed has no link of its own
    assert off.text.replace(sealed[0], unsealed) == plain.text
    assert (off.html or "").replace(sealed[0], unsealed) == plain.html
    assert "/rate/" not in (plain.html or "") and "rating" not in plain.text.lower()


def test_a_context_built_by_hand_without_the_rating_keys_still_renders() -> None:
    ctx = sample_context("refund_processed")
    ctx.pop("rating_url")
    ctx.pop("rating_urls")
    assert "/rate/" not in render("email", "refund_processed", ctx).text
    assert render("sms", "refund_processed", ctx).text
