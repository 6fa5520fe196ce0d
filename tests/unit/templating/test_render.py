"""Unit tests for return_notify.templating.render: default templates, filters and the sandbox."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from return_notify.templating import render as rendering
from return_notify.templating.render import (
    MAX_OUTPUT_CHARS,
    PARTS,
    Rendered,
    TemplateRenderError,
    known_templates,
    render,
    render_string,
)

MILESTONES = (
    "return_initiated",
    "return_approved",
    "label_created",
    "shipment_dispatched",
    "in_transit",
    "warehouse_received",
    "inspection_completed",
    "restocked",
    "refund_processed",
    "return_completed",
    "return_rejected",
    "return_cancelled",
    "exception",
)
CHANNELS = tuple(PARTS)
CASES = [(channel, milestone) for channel in CHANNELS for milestone in MILESTONES]

RETURN_ID = "RMA-1001"
STATUS_URL = "https://returns.acme.example/r/RMA-1001"
LABEL_URL = "https://returns.acme.example/r/RMA-1001/label"
TRACKING_URL = "https://returns.acme.example/r/RMA-1001/track"

# GSM 03.38 basic character set: an SMS made only of these fits 160 chars per segment.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Milestones whose typical SMS may exceed one 160-char segment (none today).
LONG_SMS_ALLOWED: set[str] = set()

EMPTY_DATA: dict[str, Any] = {
    "eta": None,
    "carrier": None,
    "tracking_url": None,
    "tracking_number": None,
    "label_url": None,
    "label_expires_at": None,
    "refund_amount": None,
    "currency": None,
    "refund_method": None,
    "inspection_outcome": None,
    "reason": None,
    "items": None,
    "drop_off_by": None,
}
ITEMS = [{"name": "Linen shirt", "quantity": 1}, {"name": "Slim chinos", "quantity": 2}]
REFUND = {"refund_amount": "49.90", "currency": "USD", "refund_method": "original_payment"}
TRANSIT = {
    "carrier": "UPS",
    "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
    "tracking_number": "1Z999AA10123456784",
}

# What a realistic event carries for each milestone, and the link the caller would choose.
TYPICAL: dict[str, tuple[dict[str, Any], str]] = {
    "return_initiated": ({"items": ITEMS}, STATUS_URL),
    "return_approved": (
        {"label_url": LABEL_URL, "carrier": "UPS", "drop_off_by": "2024-12-06", **REFUND},
        LABEL_URL,
    ),
    "label_created": (
        {
            "label_url": LABEL_URL,
            "carrier": "UPS",
            "drop_off_by": "2024-12-06",
            "label_expires_at": "2024-12-10T23:59:00Z",
        },
        LABEL_URL,
    ),
    "shipment_dispatched": ({**TRANSIT, "eta": "2024-12-03", **REFUND}, TRACKING_URL),
    "in_transit": (
        {**TRANSIT, "eta": "2024-12-04T18:00:00+00:00", "reason": "weather_delay"},
        TRACKING_URL,
    ),
    "warehouse_received": ({"items": ITEMS, **REFUND}, STATUS_URL),
    "inspection_completed": ({"inspection_outcome": "accepted", **REFUND}, STATUS_URL),
    "restocked": (dict(REFUND), STATUS_URL),
    "refund_processed": (dict(REFUND), STATUS_URL),
    "return_completed": (dict(REFUND), STATUS_URL),
    "return_rejected": ({"reason": "outside_return_window"}, STATUS_URL),
    "return_cancelled": ({"reason": "customer_request", "label_url": LABEL_URL}, STATUS_URL),
    "exception": ({**TRANSIT, "reason": "lost_parcel"}, STATUS_URL),
}


def make_context(milestone: str, data: dict[str, Any] | None = None, **overrides: Any) -> dict:
    extra, cta_url = TYPICAL[milestone]
    context: dict[str, Any] = {
        "milestone": milestone,
        "return_id": RETURN_ID,
        "tenant": {
            "slug": "acme",
            "name": "Acme Outfitters",
            "brand_color": "#1a73e8",
            "logo_url": "https://cdn.acme.example/logo.png",
            "support_url": "https://acme.example/help",
            "support_email": "help@acme.example",
        },
        "customer": {"name": "Ana"},
        "data": {**EMPTY_DATA, **(extra if data is None else data)},
        "occurred_at": datetime(2024, 11, 29, 10, 30, tzinfo=UTC),
        "cta_url": cta_url,
        "status_url": STATUS_URL,
        "unsubscribe_url": "https://returns.acme.example/unsubscribe/abc123",
    }
    context.update(overrides)
    return context


def all_output(result: Rendered) -> str:
    return "\n".join(part for part in (result.subject, result.text, result.html) if part)


# --------------------------------------------------------------------------- coverage


def test_known_templates_cover_every_channel_and_milestone() -> None:
    assert set(known_templates()) >= set(CASES)


@pytest.mark.parametrize(("channel", "milestone"), CASES)
def test_renders_typical_event(channel: str, milestone: str) -> None:
    context = make_context(milestone)
    result = render(channel, milestone, context)

    output = all_output(result)
    assert RETURN_ID in result.text
    assert context["cta_url"] in result.text
    assert "None" not in output
    if channel == "email":
        assert result.subject and result.html
        assert context["cta_url"] in result.html
        assert "\n" not in result.subject
        assert result.html.startswith("<!DOCTYPE html>")
        assert '<html lang="en"' in result.html
        assert 'alt="Acme Outfitters"' in result.html
        assert "Hi Ana," in result.text and "Hi Ana," in result.html
        assert "https://returns.acme.example/unsubscribe/abc123" in result.html
        assert "\n\n\n" not in result.text
    elif channel == "inapp":
        assert result.subject and "\n" not in result.subject
        assert result.html is None
    else:
        assert result.subject is None and result.html is None
        assert "Acme Outfitters" in result.text
        assert "\n" not in result.text


@pytest.mark.parametrize("milestone", MILESTONES)
def test_sms_is_short_plain_gsm7(milestone: str) -> None:
    text = render("sms", milestone, make_context(milestone)).text
    assert len(text) <= 320
    if milestone not in LONG_SMS_ALLOWED:
        assert len(text) <= 160, f"{len(text)} chars: {text}"
    assert set(text) <= GSM7_BASIC, set(text) - GSM7_BASIC


@pytest.mark.parametrize(("channel", "milestone"), CASES)
def test_missing_optional_data_renders(channel: str, milestone: str) -> None:
    context = make_context(
        milestone,
        data=dict(EMPTY_DATA),
        customer={"name": None},
        tenant={
            "slug": "acme",
            "name": "Acme",
            "brand_color": "#1a73e8",
            "logo_url": None,
            "support_url": None,
            "support_email": None,
        },
        unsubscribe_url=None,
        cta_url=STATUS_URL,
    )
    result = render(channel, milestone, context)
    assert RETURN_ID in result.text and STATUS_URL in result.text
    assert "None" not in all_output(result)
    if channel == "email":
        assert result.text.startswith("Hello,")
        assert result.html is not None
        assert "Unsubscribe" not in result.html and "<img" not in result.html
    if channel == "sms":
        assert len(result.text) <= 160


@pytest.mark.parametrize("outcome", ["accepted", "partial", "rejected", None, "ACCEPTED"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_inspection_outcomes(channel: str, outcome: str | None) -> None:
    data = {"inspection_outcome": outcome, "reason": "Item shows signs of wear", **REFUND}
    result = render(channel, "inspection_completed", make_context("inspection_completed", data))
    text = all_output(result)
    assert RETURN_ID in text
    if outcome and outcome.lower() == "rejected" and channel == "email":
        assert "Item shows signs of wear" in text
    if outcome == "partial":
        assert "$49.90" in text
    if channel == "sms":
        assert len(result.text) <= 160


@pytest.mark.parametrize("reason", ["label_expired", "lost_parcel", "Carrier reported damage."])
@pytest.mark.parametrize("channel", CHANNELS)
def test_exception_reasons(channel: str, reason: str) -> None:
    context = make_context("exception", {"reason": reason, "drop_off_by": "2024-12-20"})
    result = render(channel, "exception", context)
    assert "..." not in result.text.replace(STATUS_URL, "")  # no doubled full stops
    if reason == "label_expired":
        assert "the return label expired" in result.text
    if channel == "sms":
        assert len(result.text) <= 160


@pytest.mark.parametrize("method", ["store_credit", "gift_card", "original_payment", None])
def test_refund_method_wording(method: str | None) -> None:
    data = {**REFUND, "refund_method": method, "currency": "GBP"}
    result = render("email", "refund_processed", make_context("refund_processed", data))
    assert result.subject == "We've refunded £49.90 for your return RMA-1001"
    if method == "store_credit":
        assert "to your store credit" in result.text
        assert "ready to use on your next order" in result.text
    if method == "original_payment":
        assert "to your original payment method" in result.text


def test_items_as_strings_and_extra_data_keys() -> None:
    data = {"items": ["Wool scarf", "Leather belt"], "extra_key": {"nested": 1}}
    result = render("email", "return_initiated", make_context("return_initiated", data))
    assert "- Wool scarf\n- Leather belt" in result.text
    assert "<li" in (result.html or "") and "Leather belt" in (result.html or "")


def test_long_item_lists_are_capped() -> None:
    items = [{"name": f"Item {i}", "quantity": 1} for i in range(25)]
    result = render("email", "return_initiated", make_context("return_initiated", {"items": items}))
    assert "Item 9" in result.text and "Item 10" not in result.text
    assert "and 15 more" in result.text


# --------------------------------------------------------------------------- escaping


HOSTILE = "<script>alert('x')</script>"


def hostile_context(milestone: str) -> dict[str, Any]:
    extra, _ = TYPICAL[milestone]
    return make_context(
        milestone,
        {**extra, "reason": HOSTILE, "items": [{"name": HOSTILE, "quantity": 1}]},
        customer={"name": HOSTILE},
        tenant={
            "slug": "evil",
            "name": '"><img src=x onerror=alert(1)>',
            "brand_color": "red;background:url(javascript:alert(1))",
            "logo_url": "javascript:alert(1)",
            "support_url": "javascript:alert(2)",
            "support_email": "help@acme.example",
        },
    )


@pytest.mark.parametrize("milestone", MILESTONES)
def test_email_html_escapes_hostile_data(milestone: str) -> None:
    result = render("email", milestone, hostile_context(milestone))
    html = result.html or ""
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<img src=x" not in html
    assert "javascript:" not in html
    assert "red;background" not in html
    assert "#1a73e8" in html  # invalid brand colour replaced by the default
    assert "Hi &lt;script&gt;" in html


@pytest.mark.parametrize("channel", ["email", "sms", "inapp"])
def test_plain_text_is_not_html_escaped(channel: str) -> None:
    context = hostile_context("return_rejected")
    context["tenant"]["name"] = "Tom & Jerry's <Shop>"
    result = render(channel, "return_rejected", context)
    assert "&amp;" not in result.text and "&lt;" not in result.text and "&#39;" not in result.text
    if channel == "email":
        assert HOSTILE in result.text
    if channel != "inapp":
        assert "Tom & Jerry's <Shop>" in result.text


def test_brand_colour_and_button_contrast() -> None:
    context = make_context("label_created")
    context["tenant"]["brand_color"] = "#FFD700"  # light yellow: needs dark text
    html = render("email", "label_created", context).html or ""
    assert "background-color:#FFD700" in html and "color:#111111" in html
    context["tenant"]["brand_color"] = "#0b3d2e"  # dark green: white text
    html = render("email", "label_created", context).html or ""
    assert "background-color:#0b3d2e" in html and "color:#ffffff" in html


# --------------------------------------------------------------------------- errors


def test_undefined_variable_raises() -> None:
    with pytest.raises(TemplateRenderError, match="undefined"):
        render_string("Hello {{ nobody }}", {})
    with pytest.raises(TemplateRenderError, match="undefined"):
        render_string("{{ data.not_a_key }}", {"data": {"eta": None}}, html=True)


def test_missing_context_key_names_template() -> None:
    context = make_context("label_created")
    del context["return_id"]
    with pytest.raises(TemplateRenderError) as info:
        render("email", "label_created", context)
    assert "email/label_created.subject.j2" in str(info.value)
    assert "return_id" in str(info.value)
    assert info.value.template == "email/label_created.subject.j2"


def test_syntax_error_raises() -> None:
    with pytest.raises(TemplateRenderError, match="syntax error at line 2"):
        render_string("ok\n{% if %}", {})


@pytest.mark.parametrize(
    ("channel", "milestone"),
    [("email", "no_such_milestone"), ("fax", "label_created"), ("sms", "../layouts/email")],
)
def test_unknown_template_raises(channel: str, milestone: str) -> None:
    with pytest.raises(TemplateRenderError):
        render(channel, milestone, make_context("label_created"))


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ data.update({'eta': 'x'}) }}",
        "{{ data.items.__self__ }}",
        "{{ 'x' * 10**9 }}",
        "{{ 2 ** 100000000 }}",
    ],
)
@pytest.mark.parametrize("html", [False, True])
def test_sandbox_escapes_are_blocked(source: str, html: bool) -> None:
    with pytest.raises(TemplateRenderError, match="sandbox|unsafe|security|large"):
        render_string(source, {"data": {"eta": None}}, html=html)


def test_output_size_limit() -> None:
    ok = render_string("{{ 'x' * 1000 }}", {})
    assert ok == "x" * 1000
    with pytest.raises(TemplateRenderError, match="exceeds the limit"):
        render_string("{% for i in range(60000) %}xx{% endfor %}", {})
    with pytest.raises(TemplateRenderError, match="exceeds the limit"):
        render_string("{{ big }}", {"big": "y" * (MAX_OUTPUT_CHARS + 1)})


def test_render_string_autoescape() -> None:
    assert render_string("{{ v }}", {"v": "<b>"}) == "<b>"
    assert render_string("{{ v }}", {"v": "<b>"}, html=True) == "&lt;b&gt;"


def test_render_string_can_use_packaged_templates() -> None:
    context = make_context("label_created")
    preview = render_string('{% include "sms/label_created.text.j2" %}', context)
    assert RETURN_ID in preview and LABEL_URL in preview
    page = render_string('{% extends "email/label_created.html.j2" %}', context, html=True)
    assert page.lstrip().startswith("<!DOCTYPE html>") and "Download your label" in page


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("49.90", "USD", "$49.90"),
        ("49.9", "usd", "$49.90"),
        ("1234.5", "EUR", "€1,234.50"),
        ("10", "GBP", "£10.00"),
        ("5.00", "CAD", "CA$5.00"),
        ("5.00", "AUD", "A$5.00"),
        ("49.90", "SEK", "49.90 SEK"),
        ("49.90", None, "49.90"),
        ("-3.5", "USD", "-$3.50"),
        (None, "USD", ""),
        ("n/a", "USD", "n/a USD"),
        ("1e99999", "USD", "1e99999 USD"),
    ],
)
def test_money(amount: str | None, currency: str | None, expected: str) -> None:
    assert rendering.money(amount, currency) == expected
    assert render_string("{{ a|money(c) }}", {"a": amount, "c": currency}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-12-03", "Tue 3 Dec"),
        ("2024-12-03T15:00:00Z", "Tue 3 Dec"),
        ("2025-01-10T09:00:00+01:00", "Fri 10 Jan"),
        (datetime(2024, 11, 29, 10, tzinfo=UTC), "Fri 29 Nov"),
        ("next week", "next week"),
        (None, ""),
    ],
)
def test_date(value: Any, expected: str) -> None:
    assert rendering.format_date(value) == expected
    assert render_string("{{ v|date }}", {"v": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("original_payment", "original payment method"),
        ("store_credit", "store credit"),
        ("gift_card", "gift card"),
        ("STORE_CREDIT", "store credit"),
        ("bank_transfer", "bank transfer"),
        ("paypal_balance", "paypal balance"),
        ("Item arrived damaged", "Item arrived damaged"),
        (None, ""),
    ],
)
def test_humanize(value: str | None, expected: str) -> None:
    assert rendering.humanize(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ups", "UPS"),
        ("fedex", "FedEx"),
        ("royal mail", "Royal Mail"),
        ("Acme Freight", "Acme Freight"),
        (None, ""),
    ],
)
def test_carrier_name(value: str | None, expected: str) -> None:
    assert rendering.carrier_name(value) == expected


def test_free_text_reason_matching_a_code_is_humanized() -> None:
    assert rendering.humanize("Label expired") == "the return label expired"
    assert rendering.humanize("Parcel delayed at carrier hub") == "Parcel delayed at carrier hub"


def test_dict_attribute_lookup_keeps_jinja_semantics() -> None:
    context = {"d": {"eta": "x", "items": [1], "_private": 2}}
    assert render_string("{{ d.eta }}|{{ d['items'] }}|{{ d._private }}", context) == "x|[1]|2"
    assert render_string("{{ d.items is callable }}", context) == "True"  # the dict method
    with pytest.raises(TemplateRenderError, match="undefined"):
        render_string("{{ d.missing }}", context)


# --------------------------------------------------------------------------- locales & caching


@pytest.mark.parametrize("locale", ["en-US", "it", "pt-BR", "nl_NL"])
def test_locales_without_translations_fall_back_to_english(locale: str) -> None:
    context = make_context("label_created")
    assert render("sms", "label_created", context, locale=locale) == render(
        "sms", "label_created", context, locale="en")


@pytest.mark.parametrize("locale", ["../etc", "e", "en/../../x", "es US"])
def test_invalid_locale_raises(locale: str) -> None:
    with pytest.raises(TemplateRenderError, match="locale"):
        render("sms", "label_created", make_context("label_created"), locale=locale)


@pytest.fixture
def template_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the renderer at a throwaway copy of the templates (caches reset around it)."""
    root = tmp_path / "templates"
    shutil.copytree(rendering.TEMPLATE_DIR, root)
    monkeypatch.setattr(rendering, "TEMPLATE_DIR", root)
    caches = (rendering._env, rendering._html_string_env, rendering._templates)
    for cache in caches:
        cache.cache_clear()
    yield root
    for cache in caches:
        cache.cache_clear()


def test_locale_specific_template_is_preferred(template_copy: Path) -> None:
    italian = template_copy / "it" / "sms" / "label_created.text.j2"
    italian.parent.mkdir(parents=True)
    italian.write_text("{{ tenant.name }}: la tua etichetta per {{ return_id }}: {{ cta_url }}\n")
    context = make_context("label_created")
    assert render("sms", "label_created", context, locale="it-IT").text == (
        f"Acme Outfitters: la tua etichetta per {RETURN_ID}: {LABEL_URL}"
    )
    # Missing Italian files fall back to English, per part.
    assert render("email", "label_created", context, locale="it").subject == (
        "Your return label for RMA-1001 is ready"
    )
    assert ("sms", "label_created") in known_templates()


def test_broken_or_empty_template_file_raises(template_copy: Path) -> None:
    (template_copy / "email" / "label_created.html.j2").write_text("{% if %}")
    with pytest.raises(TemplateRenderError, match=r"email/label_created\.html\.j2: syntax error at line 1"):
        render("email", "label_created", make_context("label_created"))
    (template_copy / "sms" / "restocked.text.j2").write_text("{# nothing #}\n")
    with pytest.raises(TemplateRenderError, match="empty"):
        render("sms", "restocked", make_context("restocked"))


def test_environment_is_built_once_and_templates_cached() -> None:
    env = rendering._env()
    context = make_context("refund_processed")
    first = render("email", "refund_processed", context)
    assert rendering._env() is env
    assert env.auto_reload is False
    assert render("email", "refund_processed", copy.deepcopy(context)) == first
    assert rendering._templates.cache_info().hits >= 1
