"""A corpus of hostile tenant templates: each is rejected on save with a clear message, and,
forced past validation, stops with a ``TemplateRenderError`` quickly and within memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from return_notify.templating import render as rendering
from return_notify.templating.render import TemplateRenderError, compile_override, render
from return_notify.templating.samples import sample_context
from return_notify.templating.sandbox import RenderLimits, budget
from return_notify.templating.validation import OverrideKey, check_key, validate_override

OK = " {{ return_id }} {{ cta_url }}"  # so that only the hostile part can be the problem
_DOUBLED = ("{% set ns = namespace(s='ab') %}{% for i in range(13) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}")  # 16,384 characters, within every per-value limit

# name: (source, fragment of the message validation must give)
HOSTILE: dict[str, tuple[str, str]] = {
    "class_mro_subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}" + OK,
                             "attribute '__class__' is not allowed"),
    "cycler_globals": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}" + OK,
                       "attribute '__init__' is not allowed"),
    "self_internals": ("{{ self._TemplateReference__context }}" + OK, "is not allowed"),
    "getitem_dunder": ("{{ data['__class__'] }}" + OK, "key '__class__' is not allowed"),
    "map_attribute_walk": ("{{ [data]|map(attribute='__class__')|list }}" + OK,
                           "strings containing '__'"),
    "format_string_attr": ("{{ '{0.__class__}'.format(return_id) }}" + OK,
                           "calling '.format()' is not allowed"),
    "format_width_bomb": ("{{ '{:>99999999}'.format(1) }}" + OK, "calling '.format()'"),
    "printf_width_bomb": ("{{ '%099999999d' % 1 }}" + OK, "printf-style % formatting"),
    "attr_filter": ("{{ return_id|attr('__class__') }}" + OK, "the 'attr' filter is not allowed"),
    "attr_format": ("{{ (return_id|attr('format'))('{:>9999999}') }}" + OK,
                    "the 'attr' filter is not allowed"),
    "safe_filter": ("{{ customer.name|safe }}" + OK, "the 'safe' filter is not allowed"),
    "autoescape_off": ("{% autoescape false %}{{ customer.name }}{% endautoescape %}" + OK,
                       "autoescape"),
    "list_append": ("{% set x = [] %}{{ x.append(1) }}" + OK, "calling '.append()'"),
    "dict_update": ("{{ data.update({'eta': 'x'}) }}" + OK, "calling '.update()'"),
    "lipsum": ("{{ lipsum(100000) }}" + OK, "'lipsum' is not available"),
    "include_file": ("{% include '/etc/passwd' %}" + OK, "only packaged templates"),
    "extends_traversal": ("{% extends '../../etc/passwd' %}", "only packaged templates"),
    "dynamic_include": ("{% include data.reason %}" + OK, "only packaged templates"),
    "range_pow": ("{{ range(10**9)|list }}" + OK, "the ** operator is not allowed"),
    "string_repeat": ("{{ 'a' * 1000000000 }}" + OK, "repeating strings or lists"),
    "list_repeat": ("{{ ([cta_url] * 100000)|join }}" + OK, "repeating strings or lists"),
    "dynamic_repeat": ("{% set n = 100000 %}{{ return_id * n }}" + OK,
                       "repeating strings or lists with * is not allowed"),
    "range_huge": ("{% for i in range(100000000) %}{% endfor %}" + OK, "range() of more than"),
    "nested_loops": ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"
                     + OK, "render limit exceeded"),
    "loop_over_loop_output": ("{% for i in range(9000) %}{% for c in cta_url %}{% for d in cta_url %}"
                              "{% endfor %}{% endfor %}{% endfor %}" + OK, "render limit exceeded"),
    "macro_recursion": ("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}" + OK,
                        "calls nested deeper than"),
    "macro_exponential": ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x"
                          "{% endmacro %}{{ f(35) }}" + OK, "render limit exceeded"),
    "recursive_loop": ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}" + OK,
                       "calls nested deeper than"),
    "string_doubling": ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}" + OK,
                        "a value grew to"),
    "list_doubling": ("{% set ns = namespace(l=[cta_url]) %}{% for i in range(40) %}"
                      "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}" + OK,
                      "a value grew to"),
    "join_bomb": ("{% set ns = namespace(l=[]) %}{% for i in range(5000) %}"
                  "{% set ns.l = ns.l + [cta_url ~ cta_url ~ cta_url] %}{% endfor %}"
                  "{{ ns.l|join(cta_url) }}" + OK, "render limit exceeded"),
    "replace_bomb": ("{% set ns = namespace(v=cta_url) %}{% for i in range(30) %}"
                     "{% set ns.v = ns.v|replace('/', ns.v) %}{% endfor %}{{ ns.v|length }}" + OK,
                     "replace would build"),
    "center_bomb": ("{{ return_id|center(99999) }}" + OK, "is too large"),
    "slow_filter_in_a_loop": ("{% set ns = namespace(s='a b') %}{% for i in range(15) %}"
                              "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{% for i in range(500) %}"
                              "{{ (ns.s|sort|first) ~ (ns.s|urlize|length) }}{% endfor %}" + OK,
                              "render limit exceeded"),
    "int_squaring": ("{% set ns = namespace(n=7) %}{% for i in range(64) %}"
                     "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}" + OK, "number too large"),
    "output_flood": ("{% for i in range(10000) %}{{ cta_url }}{{ cta_url }}{% endfor %}" + OK,
                     "output exceeds the limit"),
    # output built inside blocks is joined at once when the block ends: it is counted as it
    # is produced (a doubled string looped 4,000 times used to build 32 M characters here)
    "set_block_flood": (_DOUBLED + "{% set x %}{% for i in range(4000) %}{{ ns.s }}{% endfor %}"
                        "{% endset %}{{ x|length }}" + OK, "characters in total"),
    "macro_body_flood": (_DOUBLED + "{% macro m() %}{% for i in range(4000) %}{{ ns.s }}"
                         "{% endfor %}{% endmacro %}{{ m()|length }}" + OK, "characters in total"),
    "filter_block_flood": (_DOUBLED + "{% filter length %}{% for i in range(4000) %}{{ ns.s }}"
                           "{% endfor %}{% endfilter %}" + OK, "characters in total"),
    "call_block_flood": (_DOUBLED + "{% macro w() %}{{ caller()|length }}{% endmacro %}"
                         "{% call w() %}{% for i in range(4000) %}{{ ns.s }}{% endfor %}"
                         "{% endcall %}" + OK, "characters in total"),
    "template_text_flood": ("{% set x %}{% for i in range(10000) %}" + "y" * 1000 +
                            "{% endfor %}{% endset %}{{ x|length }}" + OK, "characters in total"),
    "block_called_flood": (_DOUBLED + "{% set go = namespace(on=false) %}{% block b %}"
                           "{% if go.on %}{% for i in range(4000) %}{{ ns.s }}{% endfor %}"
                           "{% endif %}{% endblock %}{% set go.on = true %}"
                           "{{ self.b()|length }}" + OK, "characters in total"),
    "wordwrap_wrapstring": (_DOUBLED + "{{ ns.s|wordwrap(1, wrapstring='" + "z" * 1000 +
                            "')|length }}" + OK, "wrapstring of more than 16"),
    "wordwrap_width_one": ("{% set ns = namespace(s='a ') %}{% for i in range(15) %}"
                           "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                           "{{ ns.s|wordwrap(1, wrapstring='zzzzzzzzzzzzzzzz')|length }}" + OK,
                           "wordwrap would build"),
    "indent_lines": ("{% set ns = namespace(s='\n') %}{% for i in range(16) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|indent(16)|length }}" + OK,
                     "indent would build"),
    "nested_parentheses": ("{{ " + "(" * 1900 + "1" + ")" * 1900 + " }}" + OK,
                           "nested too deeply"),
    "undefined_variable": ("{{ customer.email }}" + OK, "undefined variable"),
    "undefined_global": ("{{ config.SECRET_KEY }}" + OK, "undefined variable"),
    "syntax_error": ("{% if %}" + OK, "syntax error"),
    "unknown_filter": ("{{ return_id|shell }}" + OK, "unknown filter 'shell'"),
    "no_cta": ("Your return {{ return_id }} is fine.", "call-to-action link"),
    "no_reference": ("Visit {{ cta_url }}", "return reference"),
}
# Hostile templates that static checks would refuse but Jinja's sandbox alone renders
# harmlessly when they are forced in (they are still refused on load: see below).
HARMLESS_WHEN_FORCED = {"map_attribute_walk", "no_cta", "no_reference", "autoescape_off"}

KEY = OverrideKey("sms", "refund_processed", "text", "en")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_rejected_on_save_with_a_clear_message(name: str) -> None:
    source, fragment = HOSTILE[name]
    started = time.monotonic()
    result = validate_override(KEY, source)
    assert not result.ok
    assert any(fragment in p for p in result.problems), result.problems
    assert all(p and len(p) < 400 for p in result.problems)
    assert time.monotonic() - started < 5


def _forced(source: str, html: bool = False, limits: RenderLimits | None = None) -> str:
    """Render with no static checks at all: only the runtime guards (and the output cap of
    every render) stand in the way."""
    template = compile_override(source, html, static_check=False)
    ctx = sample_context("refund_processed")
    extra = {"lang": "en", "ui": {}, "format_locale": None, "format_tz": None}
    with budget(limits or RenderLimits()):
        return rendering._run(template, ctx, extra, "forced")


@pytest.mark.parametrize("name", sorted(set(HOSTILE) - HARMLESS_WHEN_FORCED))
def test_forced_past_validation_stops_quickly(name: str) -> None:
    source, _ = HOSTILE[name]
    started = time.monotonic()
    with pytest.raises(TemplateRenderError) as info:
        _forced(source)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"{name} took {elapsed:.2f}s"
    assert info.value.reason


class _Stored:
    """Overrides as a worker would load them from the database (static checks on load)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def covers(self, channel: str) -> bool:
        return channel == "sms"

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        return self.source if part == "text" else None


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_stored_hostile_override_fails_the_render_with_a_reason(name: str) -> None:
    source, _ = HOSTILE[name]
    ctx = sample_context("refund_processed", locale="en")
    started = time.monotonic()
    try:
        rendered = render("sms", "refund_processed", ctx, None, _Stored(source))
    except TemplateRenderError as exc:
        assert exc.reason and "override" in exc.template
    else:  # only the harmless ones may render (they lack a link; that is validation's job)
        assert name in {"no_cta", "no_reference"}, rendered
    assert time.monotonic() - started < 2.0


def test_render_limits_are_configurable() -> None:
    slow = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="more than 1,000 operations"):
        _forced(slow, limits=RenderLimits(max_ops=1000))
    with pytest.raises(TemplateRenderError, match="took longer than 5 ms"):
        _forced(slow, limits=RenderLimits(timeout_s=0.005, max_ops=10**9))


def test_whole_corpus_in_a_memory_capped_process() -> None:
    # A worker must survive every hostile template: render them all, forced, in a child
    # process limited to 1 GiB of address space and 60 s; it must exit cleanly.
    sources = [s for name, (s, _) in HOSTILE.items() if name not in HARMLESS_WHEN_FORCED]
    script = textwrap.dedent("""
        import json, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from return_notify.templating.render import TemplateRenderError, render
        from return_notify.templating.samples import sample_context
        class One:
            def __init__(self, s): self.s = s
            def covers(self, channel): return True
            def find(self, channel, milestone, part, locale): return self.s
        failed = 0
        for source in json.load(sys.stdin):
            for static in (True, False):
                try:
                    if static:
                        render("sms", "refund_processed", sample_context("refund_processed"),
                               None, One(source))
                    else:
                        from return_notify.templating.render import _run, compile_override
                        from return_notify.templating.sandbox import RenderLimits, budget
                        t = compile_override(source, False, static_check=False)
                        extra = {"lang": "en", "ui": {}, "format_locale": None,
                                 "format_tz": None}
                        with budget(RenderLimits()):
                            _run(t, sample_context("refund_processed"), extra, "forced")
                except TemplateRenderError:
                    failed += 1
        print(failed)
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(sources),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) == 2 * len(sources)
    assert time.monotonic() - started < 60


# --------------------------------------------------------------------------- legitimate


GOOD: dict[str, tuple[OverrideKey, str]] = {
    "sms_text": (KEY, "{{ tenant.name }}: refund for {{ return_id }} is on its way "
                      "({{ data.refund_amount|money(data.currency) }}). {{ cta_url }}"),
    "html_extends_layout": (
        OverrideKey("email", "refund_processed", "html", "en"),
        '{% extends "layouts/email.html.j2" %}{% set cta_label = "See it" %}'
        "{% block heading %}Money back!{% endblock %}{% block preheader %}{% endblock %}"
        "{% block content %}<p>{{ customer.name or 'Hello' }}, {{ return_id }} "
        "{% for i in data['items'] or [] %}{{ loop.index }}{% endfor %}</p>{% endblock %}"),
    "every_milestone": (OverrideKey("inapp", "*", "text", "de"),
                        "{% macro line(m) %}[{{ m|upper }}]{% endmacro %}{{ line(milestone) }} "
                        "{{ return_id }} – {{ cta_url }}"),
    "email_subject": (OverrideKey("email", "label_created", "subject", "fr-CA"),
                      "{{ tenant.name|title }} · étiquette {{ return_id }}"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_legitimate_overrides_pass(name: str) -> None:
    key, source = GOOD[name]
    result = validate_override(key, source)
    assert result.ok, result.problems


def test_html_override_escapes_customer_data() -> None:
    key, source = GOOD["html_extends_layout"]
    ctx = sample_context("refund_processed")
    ctx["customer"]["name"] = "<script>alert(1)</script>"

    class Html:
        def covers(self, channel: str) -> bool:
            return True

        def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
            return source if part == "html" else None

    html = render("email", "refund_processed", ctx, None, Html()).html or ""
    assert "<script>" not in html and "&lt;script&gt;" in html and "Money back!" in html


@pytest.mark.parametrize(("key", "message"), [
    (("fax", "refund_processed", "text", "en"), "channel must be"),
    (("sms", "refund_processed", "html", "en"), "part of a sms message"),
    (("email", "teleported", "text", "en"), "milestone must be"),
    (("email", "refund_processed", "text", "../x"), "locale must be"),
])
def test_bad_keys_are_refused(key: tuple[str, str, str, str], message: str) -> None:
    found, problems = check_key(*key)
    assert found is None and any(message in p for p in problems)


def test_size_cap_and_empty() -> None:
    big = "{{ return_id }} {{ cta_url }}" + "x" * 5000
    assert "limit for this part is 4,000" in validate_override(KEY, big).problems[0]
    assert validate_override(KEY, "  ").problems == ["the template is empty"]


def test_packaged_templates_keep_the_fast_unguarded_path() -> None:
    ctx: dict[str, Any] = sample_context("refund_processed", locale="en-US")
    started = time.perf_counter()
    for _ in range(200):
        render("email", "refund_processed", ctx)
    assert (time.perf_counter() - started) / 200 < 0.005  # ~0.3 ms on a laptop
