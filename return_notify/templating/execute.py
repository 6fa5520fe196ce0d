"""Running one compiled template into text: the context Jinja's ``Template.generate``
would build (with the globals flattened once per template), the output limit, and errors
as ``TemplateRenderError`` with the template's line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Template

from return_notify.templating.errors import TemplateRenderError, wrap_error
from return_notify.templating.sandbox import MAX_OUTPUT_CHARS

__all__ = ["run_template"]


def _globals(template: Template) -> dict[str, Any]:
    """The template's globals as one plain dict, made once per template. Jinja's own
    ``generate`` flattens the template's ``ChainMap`` of globals on every call, which cost
    more than a short template's rendering (the environments' globals are set before any
    template renders, so the copy stays current)."""
    flat: dict[str, Any] | None = template.__dict__.get("_rsn_globals")
    if flat is None:
        flat = template.__dict__["_rsn_globals"] = dict(template.globals)
    return flat


def run_template(template: Template, context: Mapping[str, Any], extra: Mapping[str, Any],
                 name: str | None = None) -> str:
    """Render ``template``, stopping as soon as the output exceeds ``MAX_OUTPUT_CHARS``.

    What ``Template.generate`` does, with the globals flattened once per template: a
    context of globals, ``context`` and ``extra`` (later keys win), then the template's
    render function; an error gets Jinja's template-line traceback, as ``generate`` gives."""
    name = name or template.name or "<string>"
    env = template.environment
    flat = _globals(template)
    ctx = env.context_class(env, {**flat, **context, **extra}, template.name, template.blocks,
                            globals=flat)
    chunks: list[str] = []
    size = 0
    try:
        try:
            for chunk in template.root_render_func(ctx):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateRenderError(
                        name, f"output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
                chunks.append(chunk)
        except TemplateRenderError:
            raise
        except Exception:  # noqa: BLE001 - re-raised with the template's lines
            env.handle_exception()
    except TemplateRenderError:
        raise
    except Exception as exc:  # noqa: BLE001 - MemoryError/RecursionError included: never crash
        raise wrap_error(name, exc) from exc
    return "".join(chunks)
