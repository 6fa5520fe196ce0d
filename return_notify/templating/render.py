"""Sandboxed Jinja2 rendering of return-status notifications (email, SMS, in-app).

Packaged templates live in ``return_notify/templates/<channel>/<milestone>.<part>.j2``
(English) and ``templates/<locale>/<channel>/...`` (``es``, ``fr``, ``de``, or a region such
as ``de-AT``). Each part is looked up along the locale chain ``de-AT`` → ``de`` → tenant
default → ``en``; a tenant override (see ``template_store``) for a locale of the chain wins
over the packaged file of that locale. Packaged templates render in a fast sandbox compiled
once per process; overrides render in the guarded sandbox of ``template_guard`` with time,
operation and size limits. Any problem raises :class:`TemplateRenderError`.

Per part, the render adds to the context: ``lang`` (language of the template used),
``format_locale``/``format_tz`` (what the ``money``/``date`` filters format with: the
customer's locale when it has that language, and the customer's or tenant's timezone) and
``ui`` (the layout strings of that language and the tenant's tone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.exceptions import TemplateNotFound

from return_notify.templating.errors import TemplateRenderError, wrap_error
from return_notify.templating.execute import run_template as _run
from return_notify.templating.filter_guards import guard_filters
from return_notify.templating.filters import (
    FILTERS,
    carrier_name,
    contrast_text,
    css_color,
    format_date,
    humanize,
    money,
    safe_url,
)
from return_notify.templating.finish import finish
from return_notify.templating.i18n import (
    DEFAULT_LANGUAGE,
    canonical_locale,
    language_of,
    locale_chain,
    ui_strings,
)
from return_notify.templating.links import MessageLinks
from return_notify.templating.sandbox import (
    MAX_OUTPUT_CHARS,
    GuardedSandbox,
    RenderLimits,
    Sandbox,
    budget,
    guarded_globals,
)
from return_notify.templating.static_checks import static_problems

__all__ = [
    "DEFAULT_LOCALE", "FILTERS", "MAX_OUTPUT_CHARS", "PARTS", "TEMPLATE_DIR", "OverrideSource",
    "Rendered", "TemplateRenderError", "carrier_name", "compile_override", "contrast_text",
    "css_color", "format_date", "guarded_env", "humanize", "known_templates", "money", "render",
    "render_string", "safe_url",
]

#: the packaged Jinja files (``return_notify/templates``), wherever the package is installed
TEMPLATE_DIR = Path(str(files("return_notify") / "templates"))
DEFAULT_LOCALE = DEFAULT_LANGUAGE

PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "inapp": ("title", "text"),
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_TEMPLATE_FILE_RE = re.compile(r"^(email|sms|inapp)/([a-z][a-z0-9_]*)\.([a-z]+)\.j2$")


@dataclass(frozen=True)
class Rendered:
    """One rendered notification. ``subject`` is the email subject or the in-app title."""

    subject: str | None
    text: str
    html: str | None
    #: the call-to-action the message links to, when ``links`` replaced the context's
    #: (a sealed status page or a tracked link; None: the context's ``cta_url``)
    cta_url: str | None = None


class OverrideSource(Protocol):
    """A tenant's active overrides, as ``template_store.TenantOverrides`` provides them."""

    def covers(self, channel: str) -> bool:
        """True when any override exists for ``channel`` (else the fast path is taken)."""

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        """The override source for exactly this locale (milestone-specific before ``*``)."""


# --------------------------------------------------------------------------- environments


def _configure(env: Environment, filters: dict[str, Any]) -> Environment:
    env.filters.update(filters)
    # Shared macros are compiled once and exposed as globals rather than `{% import %}`ed:
    # an import costs ~25 us per render in Jinja 3.1. The HTML macros file ends in .html.j2
    # so it is autoescaped like the templates that call it.
    try:
        env.globals["html_macros"] = env.get_template("layouts/macros.html.j2").module
        env.globals["text_macros"] = env.get_template("layouts/macros.text.j2").module
    except Exception as exc:
        raise wrap_error("layouts/macros", exc) from exc
    return env


def _new_env(cls: type[Sandbox], default_for_string: bool) -> Sandbox:
    return cls(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(("html.j2",), default_for_string=default_for_string,
                                     default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        # a plain dict, not Jinja's LRU (a lock and a deque move per lookup): every render
        # of a template that extends a layout looks the layout up, and what the loader can
        # load is the packaged files, a bounded set (tenant overrides compile from strings)
        cache_size=-1,
    )


@lru_cache(maxsize=1)
def _env() -> Environment:
    """The process-wide environment of packaged templates: autoescape for ``*.html.j2``."""
    return _configure(_new_env(Sandbox, False), FILTERS)


@lru_cache(maxsize=1)
def _html_string_env() -> Environment:
    """Same environment (shared filters and template cache) but strings are autoescaped."""
    return _env().overlay(autoescape=select_autoescape(("html.j2",), default_for_string=True, default=False))


@lru_cache(maxsize=2)
def guarded_env(html: bool) -> Environment:
    """The environment of tenant overrides: guarded, strings autoescaped for ``html`` parts."""
    env = _new_env(GuardedSandbox, html)
    env.filters.clear()
    from jinja2.filters import FILTERS as JINJA_FILTERS

    env.globals.pop("lipsum", None)
    env.globals.update(guarded_globals())
    return _configure(env, guard_filters({**JINJA_FILTERS, **FILTERS}))


def _check_locale(locale: str | None) -> None:
    if locale and not _LOCALE_RE.fullmatch(locale):
        raise TemplateRenderError(f"locale {locale!r}", "invalid locale tag")


@lru_cache(maxsize=1024)
def _templates(channel: str, milestone: str, chain: tuple[str, ...]
               ) -> tuple[tuple[tuple[str, Template], ...], ...]:
    """Per part of ``channel``: the packaged ``(locale, template)`` pairs along ``chain``."""
    label = f"{channel}/{milestone}"
    if channel not in PARTS:
        raise TemplateRenderError(label, f"unknown channel {channel!r}")
    if not _NAME_RE.fullmatch(milestone):
        raise TemplateRenderError(label, f"invalid milestone name {milestone!r}")
    env = _env()
    found: list[tuple[tuple[str, Template], ...]] = []
    for part in PARTS[channel]:
        name = f"{channel}/{milestone}.{part}.j2"
        available: list[tuple[str, Template]] = []
        for loc in chain:
            path = name if loc == DEFAULT_LOCALE else f"{loc}/{name}"
            try:
                available.append((loc, env.get_template(path)))
            except TemplateNotFound:
                continue
            except Exception as exc:
                raise wrap_error(path, exc) from exc
        found.append(tuple(available))
    return tuple(found)


@lru_cache(maxsize=512)
def _compiled_override(source: str, html: bool, static_check: bool) -> Template | str:
    """The override compiled in the guarded sandbox, or the reason it is refused (cached
    either way, so a bad stored override costs one parse per process)."""
    env = guarded_env(html)
    try:
        if static_check:
            problems = static_problems(env, source)
            if problems:
                return "override rejected: " + "; ".join(problems)
        return env.from_string(source)
    except Exception as exc:  # noqa: BLE001 - any compile failure is a reason, not a crash
        return wrap_error("<override>", exc).reason


def compile_override(source: str, html: bool, static_check: bool = True) -> Template:
    """Compile a tenant template (static checks first); raises :class:`TemplateRenderError`."""
    result = _compiled_override(source, html, static_check)
    if isinstance(result, str):
        raise TemplateRenderError("<override>", result)
    return result


# --------------------------------------------------------------------------- rendering


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tenant(context: Mapping[str, Any]) -> Mapping[str, Any]:
    tenant = context.get("tenant")
    return tenant if isinstance(tenant, Mapping) else {}


@lru_cache(maxsize=1024)
def _part_vars(loc: str, chain: tuple[str, ...], localised: bool, tone: str | None,
               tz: str | None) -> Mapping[str, Any]:
    """The per-part context keys (read-only: ``generate`` copies them into the context)."""
    lang = language_of(loc)
    fmt = next((c for c in chain if language_of(c) == lang), loc) if localised else None
    return MappingProxyType({"lang": lang, "format_locale": fmt, "format_tz": tz,
                             "ui": ui_strings(lang, tone)})


def render(
    channel: str,
    milestone: str,
    context: Mapping[str, Any],
    locale: str | None = None,
    overrides: OverrideSource | None = None,
    limits: RenderLimits | None = None,
    sms_unicode: str = "transliterate",
    links: MessageLinks | None = None,
) -> Rendered:
    """Render every part of the ``channel`` message for ``milestone``.

    ``locale`` defaults to ``context["locale"]`` (the customer's); the tenant's default
    locale, timezone and tone come from ``context["tenant"]``. ``overrides`` are the
    tenant's templates, rendered under ``limits``. Subjects/titles and SMS text are
    collapsed to one line (SMS without non-breaking spaces, which would force UCS-2);
    plain text gets trailing spaces and runs of blank lines removed. SMS text is
    transliterated to GSM-7 where a character has an equivalent (``sms_unicode="keep"``
    keeps accents, at the cost of UCS-2's 70-character segments). ``links``: see
    ``MessageLinks.for_message``. Raises :class:`TemplateRenderError` on any problem.
    """
    locale = locale or context.get("locale")
    _check_locale(locale)
    tenant = _tenant(context)
    default = tenant.get("default_locale")
    chain = locale_chain(locale, default if isinstance(default, str) else None)
    localised = bool(canonical_locale(locale) or chain != (DEFAULT_LOCALE,))
    tz = _str(context.get("timezone") or tenant.get("timezone"))
    tone = _str(tenant.get("tone"))
    per_part = _templates(channel, milestone, chain)
    linked = links.for_message(
        channel, milestone, context.get("return_id"), chain,
        default_cta=context.get("cta_url") == context.get("status_url")) if links else None
    use_overrides = overrides is not None and overrides.covers(channel)
    out: dict[str, str] = {}
    for part, available in zip(PARTS[channel], per_part, strict=True):
        label = f"{channel}/{milestone}.{part}.j2"
        chosen: tuple[str, Template, bool] | None = None
        if use_overrides:
            assert overrides is not None
            packaged = dict(available)
            for loc in chain:
                source = overrides.find(channel, milestone, part, loc)
                if source is not None:
                    chosen = (loc, compile_override(source, part == "html"), True)
                    label = f"override {channel}/{milestone}.{part} [{loc}]"
                    break
                if loc in packaged:
                    chosen = (loc, packaged[loc], False)
                    break
        elif available:
            chosen = (available[0][0], available[0][1], False)
        if chosen is None:
            raise TemplateRenderError(label, f"template not found (tried locales {', '.join(chain)})")
        loc, template, guarded = chosen
        extra = _part_vars(loc, chain, localised, tone, tz)
        extra = {**extra, **linked} if linked else extra
        if guarded:
            with budget(limits or RenderLimits()):
                raw = _run(template, context, extra, label)
        else:
            raw = _run(template, context, extra)
        value = finish(channel, part, raw, sms_unicode)
        if not value:
            raise TemplateRenderError(template.name or label, "rendered an empty result")
        out[part] = value
    cta = linked.get("cta_url") if linked else None
    if channel == "email":
        return Rendered(subject=out["subject"], text=out["text"], html=out["html"], cta_url=cta)
    if channel == "inapp":
        return Rendered(subject=out["title"], text=out["text"], html=None, cta_url=cta)
    return Rendered(subject=None, text=out["text"], html=None, cta_url=cta)


def render_string(source: str, context: Mapping[str, Any], html: bool = False) -> str:
    """Render a template string in the packaged templates' sandbox (tests, tools); output is
    not trimmed. With ``html=True`` it is autoescaped like ``*.html.j2`` files. The string may
    ``{% extends %}``/``{% include %}`` the packaged templates. Locale keys of ``context``
    (``locale``, ``timezone``, ``tenant``) are honoured as in :func:`render`.
    """
    env = _html_string_env() if html else _env()
    try:
        template = env.from_string(source)
    except Exception as exc:
        raise wrap_error("<string>", exc) from exc
    locale = context.get("locale")
    _check_locale(locale)
    chain = locale_chain(locale, _tenant(context).get("default_locale"))
    tenant = _tenant(context)
    extra = _part_vars(chain[0], chain, chain != (DEFAULT_LOCALE,), _str(tenant.get("tone")),
                       _str(context.get("timezone") or tenant.get("timezone")))
    return _run(template, context, {k: v for k, v in extra.items() if k not in context})


def known_templates() -> list[tuple[str, str]]:
    """Sorted ``(channel, milestone)`` pairs for which every part exists (default locale)."""
    present: dict[tuple[str, str], set[str]] = {}
    for name in _env().list_templates(extensions=["j2"]):
        match = _TEMPLATE_FILE_RE.match(name)
        if match:
            channel, milestone, part = match.groups()
            present.setdefault((channel, milestone), set()).add(part)
    return sorted(key for key, parts in present.items() if set(PARTS[key[0]]) <= parts)


def warm(locales: tuple[str, ...] | None = None) -> int:
    """Compile every packaged template and load each locale's formats; returns renders done.

    A worker calls this in its parent process before the pool forks (``worker_init``), so
    each pool process starts with compiled templates and loaded locale data instead of
    spending its first seconds of a peak compiling them (copy-on-write memory after fork).
    A template that fails here is logged and left for the send to report.
    """
    from return_notify.events import Milestone
    from return_notify.templating.samples import sample_context

    languages = locales or (DEFAULT_LOCALE, *sorted(
        p.name for p in TEMPLATE_DIR.iterdir() if p.is_dir() and p.name not in PARTS
        and p.name not in ("layouts", "pages")))
    done = 0
    for milestone in Milestone:
        for locale in languages:
            context = sample_context(milestone.value, locale=locale)
            for channel in PARTS:
                try:
                    render(channel, milestone.value, context, locale=locale)
                    done += 1
                except TemplateRenderError:
                    continue
    return done
