"""The render context ``execute.run_template`` builds itself (globals flattened once per
template): the same precedence, globals, limits and error lines as Jinja's
``Template.generate``."""

from __future__ import annotations

import pytest

from return_notify.templating.execute import run_template as _run
from return_notify.templating.render import (
    MAX_OUTPUT_CHARS,
    TemplateRenderError,
    _env,
    render_string,
)


def test_a_runtime_error_names_its_template_line() -> None:
    with pytest.raises(TemplateRenderError, match=r"ZeroDivisionError.*\(line 3\)"):
        render_string("one\ntwo\n{{ 1 // 0 }}", {})
    with pytest.raises(TemplateRenderError, match=r"undefined variable: 'nope'.*\(line 2\)"):
        render_string("one\n{{ nope.x }}", {})


def test_context_wins_over_globals_and_extra_over_context() -> None:
    template = _env().from_string("{{ range }}|{{ lang }}")
    assert _run(template, {"range": "ctx", "lang": "ctx"}, {"lang": "extra"}) == "ctx|extra"
    # the globals stay there for keys the context does not have
    assert render_string("{{ range(3) | list }}", {}) == "[0, 1, 2]"


def test_shared_macros_are_there_and_a_context_does_not_leak_into_the_next() -> None:
    template = _env().from_string("{{ html_macros is defined }}/{{ who | default('-') }}")
    assert _run(template, {"who": "a"}, {}) == "True/a"
    assert _run(template, {}, {}) == "True/-"


def test_the_output_limit_still_stops_the_render() -> None:
    source = "{% for i in range(n) %}" + "x" * 1000 + "{% endfor %}"
    with pytest.raises(TemplateRenderError, match="output exceeds the limit"):
        render_string(source, {"n": MAX_OUTPUT_CHARS // 1000 + 5})


def test_plain_text_clean_up_matches_its_definition_on_random_text() -> None:
    """``finish`` tests for a literal before running its regular expressions; the result is
    what the expressions alone give: no trailing blanks on any line, at most one blank
    line in a row, no surrounding whitespace."""
    import random
    import re

    from return_notify.templating.finish import finish

    trailing, blank_runs = re.compile(r"[ \t]+$", re.MULTILINE), re.compile(r"\n{3,}")
    rng = random.Random(7)
    for _ in range(5000):
        raw = "".join(rng.choice("ab \t\n") for _ in range(rng.randint(0, 40)))
        assert finish("email", "text", raw) == blank_runs.sub("\n\n", trailing.sub("", raw)).strip()
