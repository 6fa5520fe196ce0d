"""Localised default templates: es/fr/de copy, locale fallback, Babel money and dates in the
customer's timezone, tone, and SMS that stay in one GSM-7 segment."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from return_notify.core.sms_segments import segment_info
from return_notify.templating import render as rendering
from return_notify.templating.branding import Branding, apply_branding
from return_notify.templating.context import build_context
from return_notify.templating.filters import (
    format_date,
    format_datetime,
    format_time,
    humanize,
    money,
    refund_via,
    ucfirst,
)
from return_notify.templating.i18n import _UI, LANGUAGES, locale_chain, ui_strings
from return_notify.templating.render import PARTS, Rendered, render
from return_notify.templating.samples import MILESTONES, SAMPLE_RETURN_ID, sample_context

CASES = [(ch, m) for ch in PARTS for m in MILESTONES]
LOCALES = ("es-ES", "fr-FR", "de-DE")
# Words that give away English copy left in a translated message.
ENGLISH = ("Your return", "We've", "What happens next", "Hi Ana", "Thanks,", "refund of")
MARKERS = {  # something every message of the language says
    "es": ("devoluci", "reembols", "solicitud", "paquete", "etiqueta"),
    "fr": ("retour", "rembours", "colis", "étiquette"),
    "de": ("Rücksend", "Erstattung", "erstattet", "Paket"),
}


def ctx_for(milestone: str, locale: str | None, full: bool = True, tz: str | None = None,
            branding: Branding | None = None) -> dict[str, Any]:
    return sample_context(milestone, "acme", "Acme", locale, branding, full, timezone=tz)


def everything(r: Rendered) -> str:
    return "\n".join(p for p in (r.subject, r.text, r.html) if p)


# --------------------------------------------------------------------------- coverage


def test_every_language_has_every_template_of_english() -> None:
    root = rendering.TEMPLATE_DIR
    english = {p.relative_to(root).as_posix() for d in PARTS for p in (root / d).glob("*.j2")}
    assert len(english) == 13 * 6
    for lang in ("es", "fr", "de"):
        got = {p.relative_to(root / lang).as_posix() for p in (root / lang).rglob("*.j2")}
        assert got == english, lang


def test_ui_strings_have_the_same_keys_in_every_language() -> None:
    keys = set(_UI["en"])
    for lang in LANGUAGES:
        assert set(_UI[lang]) == keys, lang
        for tone in ("friendly", "formal"):
            ui = ui_strings(lang, tone)
            assert {"greet_name", "greet", "sign_off", "colon"} <= set(ui)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("channel", "milestone"), CASES)
def test_renders_in_the_customer_language(channel: str, milestone: str, locale: str) -> None:
    for full in (True, False):
        ctx = ctx_for(milestone, locale, full)
        r = render(channel, milestone, ctx)
        out = everything(r)
        assert SAMPLE_RETURN_ID in r.text and ctx["cta_url"] in r.text
        assert "None" not in out and "{{" not in out and ".." not in out.replace("...", "")
        for word in ENGLISH:
            assert word not in out, (word, out)
        lang = locale[:2]
        assert any(m in out for m in MARKERS[lang]), out
        if channel == "email":
            assert f'<html lang="{lang}"' in (r.html or "")
            assert ctx["cta_url"] in (r.html or "")


SMS_LOCALES = ("es-ES", "fr-FR", "de-DE", "de-AT", "fr-CA", "es-MX")
# Every day of a leap year (10:00 UTC): every weekday and month name each locale abbreviates
# (es "sáb", "mié"; fr "févr.", "août", "déc."), 29 February included, and the year's end.
YEAR = tuple(datetime(2028, 1, 1, 10, tzinfo=UTC) + timedelta(days=i) for i in range(366))


@pytest.mark.parametrize("locale", SMS_LOCALES)
def test_sms_fit_one_gsm7_segment_on_every_day_of_a_year(locale: str) -> None:
    # de: ä ö ü ß are GSM-7; fr: é è à ù are, â ê î ô û ç ë ï œ are not; es: é ñ ü ¿ ¡ are,
    # á í ó ú are not. Dates and names are transliterated where GSM-7 lacks a letter.
    for now in YEAR:
        for milestone in MILESTONES:
            for full in (True, False):
                ctx = sample_context(milestone, "acme", "Acme", locale, None, full, now=now)
                text = render("sms", milestone, ctx).text
                info = segment_info(text)
                assert info.encoding == "GSM-7", (now.date(), text,
                                                  {c for c in text if not c.isascii()})
                assert info.segments == 1, (now.date(), info, text)


def test_sms_unicode_keep_sends_accents_as_ucs2() -> None:
    # given: a Spanish label SMS whose drop-off day is a Saturday ("sáb")
    saturday = datetime(2026, 12, 5, 10, tzinfo=UTC) - timedelta(days=7)  # +7 d: a Saturday
    ctx = sample_context("label_created", "acme", "Acme", "es-ES", None, True, now=saturday)
    # when / then: by default the accent goes and the SMS stays GSM-7 ...
    default = render("sms", "label_created", ctx).text
    assert "sab" in default and segment_info(default).encoding == "GSM-7", default
    # ... and RSN_SMS_UNICODE=keep keeps it, as UCS-2
    kept = render("sms", "label_created", ctx, sms_unicode="keep").text
    assert "sáb" in kept and segment_info(kept).encoding == "UCS-2", kept


# --------------------------------------------------------------------------- fallback


def test_locale_chain() -> None:
    assert locale_chain("de-AT", "fr") == ("de-AT", "de", "fr", "en")
    assert locale_chain("de_at", None) == ("de-AT", "de", "en")
    assert locale_chain(None, None) == ("en",)
    assert locale_chain("en-GB", "en-US") == ("en-GB", "en", "en-US")


def test_de_at_falls_back_to_german_with_austrian_formats() -> None:
    ctx = ctx_for("refund_processed", "de-AT")
    r = render("email", "refund_processed", ctx)
    assert "Ihre Erstattung ist veranlasst" in (r.html or "")
    assert "€ 49,90" in r.text.replace("\xa0", " ")  # de-AT puts the sign first
    de = render("email", "refund_processed", ctx_for("refund_processed", "de-DE"))
    assert "49,90 €" in de.text.replace("\xa0", " ")


def test_unknown_language_falls_back_to_tenant_default_then_english() -> None:
    ctx = ctx_for("return_approved", "pt-BR")
    assert render("inapp", "return_approved", ctx).subject == "Return approved"
    ctx = ctx_for("return_approved", "pt-BR", branding=Branding(1, default_locale="fr-FR"))
    assert render("inapp", "return_approved", ctx).subject == "Retour approuvé"


def test_locale_argument_wins_over_context() -> None:
    ctx = ctx_for("return_approved", "de-DE")
    assert render("inapp", "return_approved", ctx, locale="es").subject == "Devolución aprobada"


@pytest.fixture
def template_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "templates"
    shutil.copytree(rendering.TEMPLATE_DIR, root)
    monkeypatch.setattr(rendering, "TEMPLATE_DIR", root)
    caches = (rendering._env, rendering._html_string_env, rendering._templates,
              rendering.guarded_env, rendering._compiled_override)
    for cache in caches:
        cache.cache_clear()
    yield root
    for cache in caches:
        cache.cache_clear()


def test_region_specific_template_wins_then_language(template_copy: Path) -> None:
    austrian = template_copy / "de-AT" / "sms" / "return_approved.text.j2"
    austrian.parent.mkdir(parents=True)
    austrian.write_text("{{ tenant.name }}: Servus! {{ return_id }} passt: {{ cta_url }}\n")
    text = render("sms", "return_approved", ctx_for("return_approved", "de-AT")).text
    assert "Servus!" in text
    german = render("sms", "return_approved", ctx_for("return_approved", "de-DE")).text
    assert "Servus" not in german and "genehmigt" in german


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("locale", "currency", "expected"), [
    ("en-US", "USD", "$49.90"), ("en-GB", "GBP", "£49.90"), ("de-DE", "EUR", "49,90 €"),
    ("de-AT", "EUR", "€ 49,90"), ("fr-FR", "EUR", "49,90 €"), ("es-ES", "EUR", "49,90 €"),
    ("fr-CA", "CAD", "49,90 $"), ("en-US", "JPY", "¥4,990"), ("de-DE", "XX", "49,90 XX"),
    ("en-US", None, "49.90"),
])
def test_money_per_locale(locale: str, currency: str | None, expected: str) -> None:
    amount = "4990" if currency == "JPY" else "49.9"
    assert money(amount, currency, locale).replace("\xa0", " ").replace("\u202f", " ") == expected


def test_money_neutral_without_locale_and_nonsense_amounts() -> None:
    assert money("1234.5", "EUR") == "€1,234.50"
    assert money("n/a", "EUR", "de-DE") == "n/a EUR"
    assert money("1e99999", "USD", "fr") == "1e99999 USD"
    assert money(None, "USD", "de") == ""


@pytest.mark.parametrize(("value", "locale", "tz", "expected"), [
    ("2024-12-03", "en-US", "Asia/Tokyo", "Tue, Dec 3"),  # a date has no timezone
    ("2024-12-04T23:30:00+00:00", "en-US", "America/Los_Angeles", "Wed, Dec 4"),
    ("2024-12-04T23:30:00+00:00", "de-DE", "Europe/Berlin", "Do., 5. Dez."),
    ("2024-12-04T23:30:00Z", "fr-FR", "Europe/Paris", "jeu. 5 déc."),
    ("2024-12-04T10:00:00", "es-ES", "Europe/Madrid", "mié, 4 dic"),  # naive = UTC
    ("2024-12-04T10:00:00+00:00", "de-DE", "Not/AZone", "Mi., 4. Dez."),  # bad zone: UTC
    ("next week", "de-DE", None, "next week"),
    (date(2024, 12, 3), "en-GB", None, "Tue 3 Dec"),
])
def test_dates_per_locale_in_customer_timezone(value: Any, locale: str, tz: str | None,
                                               expected: str) -> None:
    assert format_date(value, locale, tz) == expected


def test_times_and_datetimes() -> None:
    at = "2024-12-04T15:05:00+00:00"
    assert format_time(at, "en-US", "America/New_York") == "10:05\u202fAM"
    assert format_time(at, "de-DE", "Europe/Berlin") == "16:05"
    assert format_datetime(at, "de-DE", "Europe/Berlin") == "Mi., 4. Dez., 16:05"
    assert format_datetime("2024-12-04", "fr-FR", "Europe/Paris") == "mer. 4 déc."


def test_dates_in_messages_use_the_customer_timezone() -> None:
    ctx = ctx_for("warehouse_received", "en-US", tz="Asia/Tokyo")
    ctx["occurred_at"] = datetime(2024, 11, 29, 23, 30, tzinfo=UTC)  # Nov 30 in Tokyo
    assert "on Sat, Nov 30" in render("email", "warehouse_received", ctx).text
    ctx["timezone"] = "America/New_York"
    assert "on Fri, Nov 29" in render("email", "warehouse_received", ctx).text


def test_codes_are_translated() -> None:
    assert humanize("store_credit", "de") == "Guthaben"
    assert humanize("Label expired", "fr") == "l'étiquette de retour a expiré"
    assert humanize("paypal_balance", "es") == "paypal balance"
    assert refund_via("original_payment", "es") == "en tu método de pago original"
    assert refund_via("gift_card", "de") == "auf eine Geschenkkarte"
    assert refund_via("paypal_balance", "fr") == "via paypal balance"
    assert refund_via(None, "fr") == ""
    assert ucfirst("ursprüngliches Zahlungsmittel") == "Ursprüngliches Zahlungsmittel"


# --------------------------------------------------------------------------- context, tone


def test_build_context_carries_customer_locale_and_timezone() -> None:
    payload = {"return_id": "R-1", "milestone": "return_approved",
               "occurred_at": "2024-11-29T10:00:00+00:00",
               "customer": {"id": "c", "locale": "fr-CA", "timezone": "America/Montreal"}}
    ctx = build_context(payload, "acme", None, "https://x.example")
    assert ctx["locale"] == "fr-CA" and ctx["timezone"] == "America/Montreal"
    assert render("inapp", "return_approved", ctx).subject == "Retour approuvé"


@pytest.mark.parametrize(("locale", "greeting", "sign_off"), [
    ("en-US", "Dear Ana,", "Kind regards,"), ("de-DE", "Guten Tag Ana,", "Mit freundlichen Grüßen"),
    ("fr-FR", "Bonjour Ana,", "Cordialement,"), ("es-ES", "Buenos días, Ana:", "Atentamente,"),
])
def test_formal_tone_changes_greeting_and_sign_off(locale: str, greeting: str, sign_off: str) -> None:
    ctx = ctx_for("return_approved", locale, branding=Branding(1, tone="formal"))
    text = render("email", "return_approved", ctx).text
    assert text.startswith(greeting) and f"{sign_off}\nAcme" in text


def test_branding_reaches_every_language() -> None:
    branding = Branding(1, display_name="Nordhaus Home", brand_color="#0b3d2e",
                        accent_color="#FFD700", logo_url="https://cdn.example/logo.png",
                        support_email="hilfe@nordhaus.example")
    for locale in ("en", *LOCALES):
        ctx = apply_branding(ctx_for("label_created", locale), branding)
        html = render("email", "label_created", ctx).html or ""
        assert 'src="https://cdn.example/logo.png"' in html and 'alt="Nordhaus Home"' in html
        assert "border-top:4px solid #0b3d2e" in html
        assert "background-color:#FFD700" in html and "color:#111111" in html
        assert "mailto:hilfe@nordhaus.example" in html
