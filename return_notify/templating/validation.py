"""Validation of a tenant template before it is saved: every problem, with a clear message.

In order: the key (channel, part, milestone, locale), the size cap, the syntax, the static
rules of ``template_static`` (no ``safe``, no ``attr``, no ``_`` names, only packaged
templates, ...), then a sample render of every milestone the override applies to, with a
rich and a minimal sample event, under the same limits as at send time. The rendered body
must show the return reference and the call-to-action link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jinja2.exceptions import TemplateSyntaxError

from return_notify.core.sms_segments import segment_info
from return_notify.storage.models import ANY_MILESTONE
from return_notify.templating.branding import Branding
from return_notify.templating.i18n import canonical_locale
from return_notify.templating.render import (
    PARTS,
    Rendered,
    TemplateRenderError,
    compile_override,
    guarded_env,
    render,
)
from return_notify.templating.samples import MILESTONES, SAMPLE_RETURN_ID, sample_context
from return_notify.templating.sandbox import RenderLimits
from return_notify.templating.static_checks import static_problems

__all__ = ["MAX_SOURCE_CHARS", "OverrideKey", "ValidationResult", "check_key", "validate_override"]

MAX_SOURCE_CHARS = {"subject": 2_000, "title": 2_000, "sms": 4_000, "text": 32_000, "html": 64_000}
"""Size cap of a template's source, per part (``sms`` for the SMS text)."""
NESTED_TOO_DEEPLY = ("the template is nested too deeply (brackets, blocks or expressions "
                     "within each other): simplify it")
REQUIRED_IN = frozenset({"text", "html"})
"""Parts whose output must contain the return reference and the call-to-action link."""


@dataclass(frozen=True)
class OverrideKey:
    """What an override replaces: one part of one channel's message, for one locale."""

    channel: str
    milestone: str
    part: str
    locale: str

    def label(self) -> str:
        return f"{self.channel}/{self.milestone}.{self.part} [{self.locale}]"


@dataclass
class ValidationResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "warnings": self.warnings}


def check_key(channel: str, milestone: str, part: str, locale: str) -> tuple[OverrideKey | None, list[str]]:
    """The normalised key (locale ``de_at`` → ``de-AT``), or the problems with it."""
    problems: list[str] = []
    if channel not in PARTS:
        problems.append(f"channel must be one of {', '.join(PARTS)}")
    elif part not in PARTS[channel]:
        problems.append(f"part of a {channel} message must be one of {', '.join(PARTS[channel])}")
    if milestone != ANY_MILESTONE and milestone not in MILESTONES:
        problems.append(f"milestone must be '*' or one of {', '.join(MILESTONES)}")
    tag = canonical_locale(locale)
    if tag is None:
        problems.append("locale must be a BCP 47 tag such as en, de or de-AT")
    if problems:
        return None, problems
    assert tag is not None
    return OverrideKey(channel, milestone, part, tag), []


class _One:
    """An ``OverrideSource`` with a single template (the one being validated)."""

    def __init__(self, key: OverrideKey, source: str) -> None:
        self.key, self.source = key, source

    def covers(self, channel: str) -> bool:
        return channel == self.key.channel

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        k = self.key
        if (channel, part, locale) == (k.channel, k.part, k.locale) and k.milestone in (
                milestone, ANY_MILESTONE):
            return self.source
        return None


def _part_output(rendered: Rendered, part: str) -> str:
    if part in ("subject", "title"):
        return rendered.subject or ""
    return (rendered.html if part == "html" else rendered.text) or ""


def validate_override(
    key: OverrideKey,
    source: str,
    branding: Branding | None = None,
    tenant_slug: str = "acme-outfitters",
    limits: RenderLimits | None = None,
    total_s: float | None = None,
) -> ValidationResult:
    """Check ``source`` as the override ``key``; never raises for a bad template.

    ``total_s`` bounds the time of all sample renders together (a ``*`` template is
    rendered for 13 milestones, twice each): past it the template is refused as too slow.
    """
    result = ValidationResult(ok=False)
    started = time.monotonic()
    cap = MAX_SOURCE_CHARS["sms" if key.channel == "sms" else key.part]
    if len(source) > cap:
        result.problems.append(f"the template is {len(source):,} characters; the limit for this "
                               f"part is {cap:,}")
        return result
    if not source.strip():
        result.problems.append("the template is empty")
        return result
    html = key.part == "html"
    try:
        result.problems.extend(static_problems(guarded_env(html), source))
    except TemplateSyntaxError as exc:
        result.problems.append(f"line {exc.lineno}: syntax error: {exc.message}")
    except RecursionError:
        result.problems.append(NESTED_TOO_DEEPLY)
    if result.problems:
        return result
    try:
        compile_override(source, html, static_check=False)
    except TemplateRenderError as exc:
        result.problems.append(exc.reason)
        return result
    milestones = MILESTONES if key.milestone == ANY_MILESTONE else (key.milestone,)
    overrides = _One(key, source)
    for milestone in milestones:
        for full in (True, False):
            sample = "sample" if full else "minimal sample (no optional data)"
            ctx = sample_context(milestone, tenant_slug, locale=key.locale, branding=branding,
                                 full=full)
            try:
                rendered = render(key.channel, milestone, ctx, key.locale, overrides, limits)
            except TemplateRenderError as exc:
                result.problems.append(f"{milestone}, {sample}: {exc.reason}")
                if "render limit exceeded" in exc.reason or "sandbox" in exc.reason:
                    break  # the same for every sample: don't spend the limit 26 times
                continue
            out = _part_output(rendered, key.part)
            if key.part in REQUIRED_IN:
                # links contain the reference: it must also be shown outside of them
                bare = out.replace(ctx["cta_url"], "").replace(ctx["status_url"], "")
                missing = [name for name, shown in (
                    ("the return reference {{ return_id }}", SAMPLE_RETURN_ID in bare),
                    ("the call-to-action link {{ cta_url }}", ctx["cta_url"] in out)) if not shown]
                if missing:
                    result.problems.append(f"{milestone}, {sample}: the message must show "
                                           f"{' and '.join(missing)}")
            if key.channel == "sms" and full:
                info = segment_info(out)
                if info.segments > 1 or info.encoding != "GSM-7":
                    result.warnings.append(
                        f"{milestone}: the SMS is {info.units} {info.encoding} units, "
                        f"{info.segments} segment(s)")
        if result.problems and ("render limit exceeded" in result.problems[-1]
                                or "sandbox" in result.problems[-1]):
            break
        if len(result.problems) >= 10:
            result.problems.append("(stopped after 10 problems)")
            break
        if total_s is not None and time.monotonic() - started > total_s:
            result.problems.append(
                f"rendering the samples took more than {total_s * 1000:.0f} ms in total "
                f"(stopped at {milestone}): the template is too slow; simplify its loops")
            break
    result.ok = not result.problems
    return result
