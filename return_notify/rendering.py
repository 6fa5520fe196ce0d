"""Sandboxed Jinja2 rendering of return-status notifications (email, SMS, in-app).

Templates live in ``return_notify/templates/<channel>/<milestone>.<part>.j2`` (English, the
default locale). A locale-specific copy may later be added as
``templates/<lang>/<channel>/<milestone>.<part>.j2``; it is tried first, with fallback to the
default file. The Jinja environment is built lazily, once per process, and compiled templates
are cached (``auto_reload=False``), so rendering a message costs a fraction of a millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date as _date
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "DEFAULT_LOCALE", "MAX_OUTPUT_CHARS", "PARTS", "TEMPLATE_DIR", "Rendered", "TemplateRenderError",
    "known_templates", "render", "render_string"
]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_LOCALE = "en"
MAX_OUTPUT_CHARS = 100_000
"""Maximum size of one rendered part (subject, text, html...), in characters."""

PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "inapp": ("title", "text"),
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_TEMPLATE_FILE_RE = re.compile(r"^(email|sms|inapp)/([a-z][a-z0-9_]*)\.([a-z]+)\.j2$")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TRAILING_SPACE_RE = re.compile(r"[ \t]+$", re.MULTILINE)


class TemplateRenderError(Exception):
    """A template could not be rendered: missing, invalid, unsafe, undefined data or too large."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"{template}: {reason}")
        self.template = template
        self.reason = reason


@dataclass(frozen=True)
class Rendered:
    """One rendered notification. ``subject`` is the email subject or the in-app title."""

    subject: str | None
    text: str
    html: str | None


# --------------------------------------------------------------------------- filters

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$"}
_HUMANIZED = {
    "original_payment": "original payment method",
    "original_payment_method": "original payment method",
    "store_credit": "store credit",
    "gift_card": "gift card",
    "bank_transfer": "bank transfer",
    "lost_parcel": "the parcel was lost in transit",
    "parcel_lost": "the parcel was lost in transit",
    "label_expired": "the return label expired",
    "inspection_failed": "the items did not pass inspection",
    "damaged_in_transit": "the parcel was damaged in transit",
    "outside_return_window": "the return window has closed",
    "customer_request": "cancelled at your request",
}
_CARRIERS = {
    name.lower().replace(" ", "_"): name
    for name in ("UPS", "USPS", "FedEx", "DHL", "DPD", "GLS", "Evri", "Royal Mail", "Canada Post",
                 "Australia Post", "Colissimo", "La Poste", "Correos", "PostNL")
}
_CODE_RE = re.compile(r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$")
_HEX_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_DEFAULT_COLOR = "#1a73e8"


def money(amount: Any, currency: str | None = None) -> str:
    """``money("49.9", "USD")`` -> ``"$49.90"``; unknown currency -> ``"49.90 XXX"``."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return f"{amount} {currency or ''}".strip()
    if not value.is_finite() or abs(value) >= 10**15:  # nonsense; don't expand "1e99999"
        return f"{amount} {currency or ''}".strip()
    code = (currency or "").strip().upper()
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.2f}"
    symbol = _CURRENCY_SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {code}".rstrip()


def format_date(value: Any) -> str:
    """ISO date/datetime string, date or datetime -> ``"Tue 3 Dec"``; unparseable -> as is."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return str(value)
    if isinstance(value, _date):  # datetime is a subclass of date
        return f"{_DAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]}"
    return str(value)


def humanize(value: Any) -> str:
    """``"original_payment"`` -> ``"original payment method"``; free text is left alone."""
    if value is None:
        return ""
    text = str(value).strip()
    known = _HUMANIZED.get(re.sub(r"[\s-]+", "_", text.lower()))
    if known is not None:
        return known
    if _CODE_RE.match(text) and ("_" in text or text.isupper()):
        return text.lower().replace("_", " ").replace("-", " ")
    return text


def carrier_name(value: Any) -> str:
    """``"ups"`` -> ``"UPS"``, ``"fedex"`` -> ``"FedEx"``; unknown names are left alone."""
    if value is None:
        return ""
    text = str(value).strip()
    return _CARRIERS.get(text.lower().replace(" ", "_"), text)


def css_color(value: Any, default: str = _DEFAULT_COLOR) -> str:
    """A ``#rgb``/``#rrggbb`` colour safe to put in an inline style, else ``default``."""
    return value if isinstance(value, str) and _HEX_COLOR_RE.match(value) else str(default)


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


FILTERS: dict[str, Any] = {
    "money": money,
    "date": format_date,
    "humanize": humanize,
    "carrier_name": carrier_name,
    "css_color": css_color,
    "contrast_text": contrast_text,
    "safe_url": safe_url,
}


# --------------------------------------------------------------------------- environment


_DICT_ATTRS = frozenset(dir(dict))


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses ``'x' * 10**9``-style memory bombs."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Fast path for `data.eta` on plain dicts: a key that is not a dict attribute name
        # can only resolve to the item, so skip the AttributeError Jinja would raise first.
        if type(obj) is dict and attribute not in _DICT_ATTRS and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 100:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("sequence repetition result too large")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def _env() -> Environment:
    """The process-wide environment: autoescape for ``*.html.j2`` files only."""
    env = _Sandbox(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(("html.j2",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=1000,
    )
    env.filters.update(FILTERS)
    # Shared macros are compiled once and exposed as globals rather than `{% import %}`ed:
    # an import costs ~25 us per render in Jinja 3.1. The HTML macros file ends in .html.j2
    # so it is autoescaped like the templates that call it.
    try:
        env.globals["html_macros"] = env.get_template("layouts/macros.html.j2").module
        env.globals["text_macros"] = env.get_template("layouts/macros.text.j2").module
    except Exception as exc:
        raise _wrap("layouts/macros", exc) from exc
    return env


@lru_cache(maxsize=1)
def _html_string_env() -> Environment:
    """Same environment (shared filters and template cache) but strings are autoescaped."""
    return _env().overlay(autoescape=select_autoescape(("html.j2",), default_for_string=True, default=False))


def _language(locale: str | None) -> str:
    if not locale:
        return DEFAULT_LOCALE
    if not _LOCALE_RE.match(locale):
        raise TemplateRenderError(f"locale {locale!r}", "invalid locale tag")
    return re.split(r"[-_]", locale, maxsplit=1)[0].lower()


@lru_cache(maxsize=512)
def _templates(channel: str, milestone: str, language: str) -> tuple[Template, ...]:
    """Compiled templates for each part of ``channel``, locale file first, then the default."""
    label = f"{channel}/{milestone}"
    if channel not in PARTS:
        raise TemplateRenderError(label, f"unknown channel {channel!r}")
    if not _NAME_RE.match(milestone):
        raise TemplateRenderError(label, f"invalid milestone name {milestone!r}")
    env = _env()
    found: list[Template] = []
    for part in PARTS[channel]:
        name = f"{channel}/{milestone}.{part}.j2"
        candidates = [name] if language == DEFAULT_LOCALE else [f"{language}/{name}", name]
        try:
            found.append(env.select_template(candidates))
        except TemplateRenderError:
            raise
        except Exception as exc:
            raise _wrap(name, exc) from exc
    return tuple(found)


# --------------------------------------------------------------------------- rendering


def _template_line(exc: BaseException) -> int | None:
    """Line of the innermost template frame in Jinja's rewritten traceback, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _wrap(template: str, exc: Exception) -> TemplateRenderError:
    if isinstance(exc, TemplateSyntaxError):
        where = exc.name or template
        return TemplateRenderError(where, f"syntax error at line {exc.lineno}: {exc.message}")
    if isinstance(exc, TemplatesNotFound):
        return TemplateRenderError(
            template, f"template not found (tried {', '.join(map(str, exc.templates))})"
        )
    if isinstance(exc, TemplateNotFound):
        return TemplateRenderError(template, f"template not found: {exc.name}")
    if isinstance(exc, SecurityError):
        reason = f"sandbox security violation: {exc}"
    elif isinstance(exc, UndefinedError):
        reason = f"undefined variable: {exc}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    line = _template_line(exc)
    return TemplateRenderError(template, f"{reason} (line {line})" if line else reason)


def _run(template: Template, context: Mapping[str, Any]) -> str:
    """Render ``template``, stopping as soon as the output exceeds ``MAX_OUTPUT_CHARS``."""
    name = template.name or "<string>"
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(name, f"output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
    except TemplateRenderError:
        raise
    except Exception as exc:
        raise _wrap(name, exc) from exc
    return "".join(chunks)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clean_text(text: str) -> str:
    text = _TRAILING_SPACE_RE.sub("", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip()


def render(channel: str, milestone: str, context: Mapping[str, Any], locale: str | None = None) -> Rendered:
    """Render every part of the ``channel`` message for ``milestone``.

    Subjects/titles and SMS text are collapsed to one line; plain text gets trailing spaces
    and runs of blank lines removed. Raises :class:`TemplateRenderError` on any problem.
    """
    templates = _templates(channel, milestone, _language(locale))
    out: dict[str, str] = {}
    for part, template in zip(PARTS[channel], templates, strict=True):
        raw = _run(template, context)
        if part in ("subject", "title") or channel == "sms":
            value = _one_line(raw)
        elif part == "html":
            value = raw.strip()
        else:
            value = _clean_text(raw)
        if not value:
            raise TemplateRenderError(template.name or part, "rendered an empty result")
        out[part] = value
    if channel == "email":
        return Rendered(subject=out["subject"], text=out["text"], html=out["html"])
    if channel == "inapp":
        return Rendered(subject=out["title"], text=out["text"], html=None)
    return Rendered(subject=None, text=out["text"], html=None)


def render_string(source: str, context: Mapping[str, Any], html: bool = False) -> str:
    """Render a template string in the same sandbox (previews, tests); output is not trimmed.

    With ``html=True`` the output is autoescaped like ``*.html.j2`` files. The string may
    ``{% extends %}``/``{% include %}`` the packaged templates.
    """
    env = _html_string_env() if html else _env()
    try:
        template = env.from_string(source)
    except Exception as exc:
        raise _wrap("<string>", exc) from exc
    return _run(template, context)


def known_templates() -> list[tuple[str, str]]:
    """Sorted ``(channel, milestone)`` pairs for which every part exists (default locale)."""
    present: dict[tuple[str, str], set[str]] = {}
    for name in _env().list_templates(extensions=["j2"]):
        match = _TEMPLATE_FILE_RE.match(name)
        if match:
            channel, milestone, part = match.groups()
            present.setdefault((channel, milestone), set()).add(part)
    return sorted(key for key, parts in present.items() if set(PARTS[key[0]]) <= parts)
