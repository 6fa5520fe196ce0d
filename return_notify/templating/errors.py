"""The one error of template rendering, and how Jinja's exceptions become its reason."""

from __future__ import annotations

from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
)

from return_notify.templating.sandbox import RenderLimitExceeded

__all__ = ["TemplateRenderError", "wrap_error"]


class TemplateRenderError(Exception):
    """A template could not be rendered: missing, invalid, unsafe, undefined data or too large."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"{template}: {reason}")
        self.template = template
        self.reason = reason


def template_line(exc: BaseException) -> int | None:
    """Line of the innermost template frame in Jinja's rewritten traceback, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def wrap_error(template: str, exc: BaseException) -> TemplateRenderError:
    """``exc`` (syntax, missing template, sandbox, limit, undefined, ...) as a render error
    whose reason names the problem and, when known, the template line."""
    if isinstance(exc, TemplateSyntaxError):
        where = exc.name or template
        return TemplateRenderError(where, f"syntax error at line {exc.lineno}: {exc.message}")
    if isinstance(exc, TemplatesNotFound):
        return TemplateRenderError(
            template, f"template not found (tried {', '.join(map(str, exc.templates))})"
        )
    if isinstance(exc, TemplateNotFound):
        return TemplateRenderError(template, f"template not found: {exc.name}")
    if isinstance(exc, RenderLimitExceeded):
        reason = f"render limit exceeded: {exc}"
    elif isinstance(exc, SecurityError):
        reason = f"sandbox security violation: {exc}"
    elif isinstance(exc, UndefinedError):
        reason = f"undefined variable: {exc}"
    elif isinstance(exc, RecursionError):
        reason = "render limit exceeded: nested too deeply (recursion)"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    line = template_line(exc)
    return TemplateRenderError(template, f"{reason} (line {line})" if line else reason)
