"""Jinja filters of the notification templates: money, dates and codes, formatted per locale.

Each filter reads the render's locale and timezone from the template context
(``format_locale``, ``format_tz``, ``lang``: set by ``rendering.render`` from the customer's
locale and timezone, the tenant's defaults and the language of the template actually used)
and formats with Babel (CLDR data): ``49,90 €`` in ``de``, ``€ 49,90`` in ``de-AT``,
``Di., 3. Dez.`` for a date. Without a locale in the context (``render_string`` on a bare
dict) they keep the neutral English formats (``$49.90``, ``Tue 3 Dec``). Results are cached:
the same amount or date in the same locale is formatted once per process.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from datetime import date as _date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel.dates import parse_pattern
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context

from return_notify.core.zones import find_zone
from return_notify.templating.i18n import DEFAULT_LANGUAGE, babel_locale, humanized, refund_via_phrase

__all__ = [
    "FILTERS", "carrier_name", "contrast_text", "css_color", "format_date", "format_datetime",
    "format_time", "humanize", "money", "refund_via", "safe_url", "ucfirst", "zone",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$"}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_CARRIERS = {
    name.lower().replace(" ", "_"): name
    for name in ("UPS", "USPS", "FedEx", "DHL", "DPD", "GLS", "Evri", "Royal Mail", "Canada Post",
                 "Australia Post", "Colissimo", "La Poste", "Correos", "PostNL")
}
_CODE_RE = re.compile(r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$")
_HEX_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_DEFAULT_COLOR = "#1a73e8"


# --------------------------------------------------------------------------- money


def _decimal(amount: Any) -> Decimal | None:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value) >= 10**15:  # nonsense; don't expand "1e99999"
        return None
    return value


def money(amount: Any, currency: str | None = None, locale: str | None = None) -> str:
    """``money("49.9", "EUR", "de-AT")`` → ``"€ 49,90"``; without a locale ``"€49.90"``.

    Unparseable amounts come back as given (``"n/a USD"``); empty ones as ``""``.
    """
    if amount is None or amount == "":
        return ""
    if isinstance(amount, str | int | Decimal) and not isinstance(amount, bool):
        return _money_cached(str(amount), currency, locale)
    return _money(amount, currency, locale)


@lru_cache(maxsize=4096)
def _money_cached(amount: str, currency: str | None, locale: str | None) -> str:
    return _money(amount, currency, locale)


def _money(amount: Any, currency: str | None, locale: str | None) -> str:
    value = _decimal(amount)
    code = (currency or "").strip().upper()
    if value is None:
        return f"{amount} {currency or ''}".strip()
    if locale is None:
        return _money_neutral(value, code)
    return _money_cldr(str(value), code, locale)


def _money_neutral(value: Decimal, code: str) -> str:
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.2f}"
    symbol = _CURRENCY_SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {code}".rstrip()


@lru_cache(maxsize=4096)
def _money_cldr(amount: str, code: str, locale: str) -> str:
    loc = babel_locale(locale)
    value = Decimal(amount)
    if _CURRENCY_RE.fullmatch(code):
        return format_currency(value, code, locale=loc)
    number = format_decimal(value, format="#,##0.00", locale=loc)
    return f"{number} {code}".rstrip()


# --------------------------------------------------------------------------- dates and times


@lru_cache(maxsize=128)
def zone(name: str | None) -> tzinfo:
    """The IANA zone ``name``, or UTC when it is missing or unknown (never fails a message)."""
    if not name:
        return UTC
    return find_zone(name) or UTC


def _parse(value: Any) -> datetime | _date | None:
    """``"2024-12-03"`` → date; ISO datetimes → aware datetime (naive ones are UTC)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return _date.fromisoformat(text)
            value = datetime.fromisoformat(text)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, _date):
        return value
    return None


def _local(value: datetime | _date, tz: str | None) -> datetime | _date:
    return value.astimezone(zone(tz)) if isinstance(value, datetime) else value


def _cacheable(value: Any) -> bool:
    return isinstance(value, str | _date)


def format_date(value: Any, locale: str | None = None, tz: str | None = None) -> str:
    """A short date with weekday in the customer's timezone: ``"Tue, Dec 3"`` (en-US),
    ``"Di., 3. Dez."`` (de), ``"mar. 3 déc."`` (fr); unparseable values as given."""
    if value is None or value == "":
        return ""
    if _cacheable(value):
        return _format_date_cached(value, locale, tz)
    return str(value)


@lru_cache(maxsize=4096)
def _format_date_cached(value: str | _date, locale: str | None, tz: str | None) -> str:
    parsed = _parse(value)
    if parsed is None:
        return str(value)
    if locale is None:
        day = _local(parsed, tz) if tz else parsed
        return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"
    return str(_date_pattern(locale).apply(_local(parsed, tz), babel_locale(locale)))


def format_time(value: Any, locale: str | None = None, tz: str | None = None) -> str:
    """A short time in the customer's timezone: ``"4:00 PM"`` (en-US), ``"16:00"`` (de)."""
    parsed = _parse(value)
    if not isinstance(parsed, datetime):
        return "" if value is None else str(value)
    local = parsed.astimezone(zone(tz))
    if locale is None:
        return local.strftime("%H:%M")
    loc = babel_locale(locale)
    return str(loc.time_formats["short"].apply(local, loc))


def format_datetime(value: Any, locale: str | None = None, tz: str | None = None) -> str:
    """Date and time: ``"Tue, Dec 3, 4:00 PM"`` (en-US), ``"Di., 3. Dez., 16:00"`` (de).
    A date without a time gives the date alone."""
    parsed = _parse(value)
    if not isinstance(parsed, datetime):
        return format_date(value, locale, tz)
    day, time = format_date(parsed, locale, tz), format_time(parsed, locale, tz)
    if locale is None:
        return f"{day}, {time}"
    pattern = str(babel_locale(locale).datetime_formats.get("short", "{1} {0}"))
    return pattern.replace("'", "").replace("{1}", day).replace("{0}", time)


@lru_cache(maxsize=256)
def _date_pattern(locale: str) -> Any:
    loc = babel_locale(locale)
    skeleton = loc.datetime_skeletons.get("MMMEd")
    return parse_pattern(str(skeleton) if skeleton is not None else "EEE d MMM")


# --------------------------------------------------------------------------- codes and text


def humanize(value: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """``"original_payment"`` → ``"original payment method"`` (``"ursprüngliches
    Zahlungsmittel"`` in German); other codes lose their underscores; free text is kept."""
    if value is None:
        return ""
    return _humanize(str(value), language)


@lru_cache(maxsize=4096)
def _humanize(value: str, language: str) -> str:
    text = value.strip()
    known = humanized(text, language)
    if known is not None:
        return known
    if _CODE_RE.fullmatch(text) and ("_" in text or text.isupper()):
        return text.lower().replace("_", " ").replace("-", " ")
    return text


def refund_via(value: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """How a refund reached the customer, as a phrase: ``"store_credit"`` → ``"as store
    credit"`` / ``"sous forme d'avoir"``; empty for no method."""
    if value is None or str(value).strip() == "":
        return ""
    return _refund_via(str(value), language)


@lru_cache(maxsize=1024)
def _refund_via(value: str, language: str) -> str:
    return refund_via_phrase(value, language, humanize(value, language))


def ucfirst(value: Any) -> str:
    """First letter upper case, the rest untouched (``capitalize`` would lower German nouns)."""
    text = "" if value is None else str(value)
    return text[:1].upper() + text[1:]


def carrier_name(value: Any) -> str:
    """``"ups"`` -> ``"UPS"``, ``"fedex"`` -> ``"FedEx"``; unknown names are left alone."""
    if value is None:
        return ""
    text = str(value).strip()
    return _CARRIERS.get(text.lower().replace(" ", "_"), text)


def css_color(value: Any, default: str = _DEFAULT_COLOR) -> str:
    """A ``#rgb``/``#rrggbb`` colour safe to put in an inline style, else ``default``."""
    return value if isinstance(value, str) and _HEX_COLOR_RE.fullmatch(value) else str(default)


def contrast_text(background: Any) -> str:
    """Text colour for a ``#hex`` background: white if it meets WCAG AA (4.5:1), else the
    better of white and near-black."""
    hex_digits = css_color(background)[1:]
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    channels = [int(hex_digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    on_white = 1.05 / (luminance + 0.05)
    on_black = (luminance + 0.05) / 0.05
    return "#ffffff" if on_white >= 4.5 or on_white >= on_black else "#111111"


def safe_url(value: Any) -> str:
    """The URL if it is http(s) or mailto, else ``""`` (keeps ``javascript:`` out of hrefs)."""
    if not isinstance(value, str):
        return ""
    url = value.strip()
    return url if url.lower().startswith(("https://", "http://", "mailto:")) else ""


# --------------------------------------------------------------------------- Jinja wrappers


def _locale(ctx: Context) -> str | None:
    value = ctx.get("format_locale")
    return value if isinstance(value, str) else None


def _tz(ctx: Context) -> str | None:
    value = ctx.get("format_tz")
    return value if isinstance(value, str) else None


def _lang(ctx: Context) -> str:
    value = ctx.get("lang")
    return value if isinstance(value, str) else DEFAULT_LANGUAGE


@pass_context
def _money_filter(ctx: Context, amount: Any, currency: str | None = None) -> str:
    return money(amount, currency, _locale(ctx))


@pass_context
def _date_filter(ctx: Context, value: Any) -> str:
    return format_date(value, _locale(ctx), _tz(ctx))


@pass_context
def _time_filter(ctx: Context, value: Any) -> str:
    return format_time(value, _locale(ctx), _tz(ctx))


@pass_context
def _datetime_filter(ctx: Context, value: Any) -> str:
    return format_datetime(value, _locale(ctx), _tz(ctx))


@pass_context
def _humanize_filter(ctx: Context, value: Any) -> str:
    return humanize(value, _lang(ctx))


@pass_context
def _refund_via_filter(ctx: Context, value: Any) -> str:
    return refund_via(value, _lang(ctx))


FILTERS: dict[str, Any] = {
    "money": _money_filter,
    "date": _date_filter,
    "time": _time_filter,
    "datetime": _datetime_filter,
    "humanize": _humanize_filter,
    "refund_via": _refund_via_filter,
    "ucfirst": ucfirst,
    "carrier_name": carrier_name,
    "css_color": css_color,
    "contrast_text": contrast_text,
    "safe_url": safe_url,
}
"""The project's filters, by name, as registered on every template environment."""
