"""Runtime limits for tenant-written templates: a sandbox that counts, times and sizes the work.

Tenant overrides run in their own ``ImmutableSandboxedEnvironment`` (the packaged templates
keep the fast, unguarded one). Jinja's sandbox already blocks attribute walks; this one adds
what it lacks (no CPU or memory limits), with a per-render budget held in a ``ContextVar``
(so the thread pool of a worker is safe):

* every loop iteration, call, attribute lookup and filter is one *operation*: more than
  ``max_ops`` per part, or a wall clock past ``timeout_s`` (checked every 64 operations),
  stops the render with :class:`RenderLimitExceeded`. Loops are guarded by compiling each
  ``for`` over ``environment.guard_iter(...)``, so even an empty nested loop is counted;
* no string or list may grow past ``max_chars`` (``~``, ``+``, filters, method results);
  filters that could build a huge value from small input (``join``, ``replace``, ``center``,
  ``indent``, ``wordwrap``, ``batch``, ``slice``) are checked *before* they run (by their
  arguments' names: a ``wordwrap`` wrapstring is at most 16 characters; the filter guards
  are in ``templating.filter_guards``), and ``*`` on
  strings or lists, ``%``-formatting of strings and big ``**`` are refused outright;
* every piece of output is counted as it is produced, wherever it goes: into the result,
  or into the buffer of a ``{% set %}`` block, a macro body, a ``{% filter %}`` or
  ``{% call %}`` block, or a block called as ``self.name()``, each joined at once when it
  ends. All that a part builds (output, concatenations, filter and call results) is at most
  ``max_alloc_chars`` characters;
* calls nest at most ``max_depth`` deep (recursive macros), ``range`` is capped at 10,000;
* only a few harmless methods of built-in values may be called (``upper``, ``get``, ...),
  ``lipsum`` is gone, and ``safe``/``attr``/``format``/``tojson``/``pprint`` are not filters.

Everything is checked in the rendering thread and stops at the next check, so a hostile
template costs at most about ``timeout_s`` of CPU and a few MB; it can neither hang nor
crash a worker: the budget is checked between operations and before every filter, so a
render stops within ``timeout_s`` plus one filter call (the slowest built-in filter on the
largest allowed value takes well under a second). The static checks of ``template_static``
run first (on save and when a stored override is loaded); these limits are the second line.

Why counting in the sandbox rather than a thread or a process: Python cannot stop a thread
(a "timed out" render would keep burning a core), and a process per render costs
milliseconds and a pool to manage inside Celery's own prefork pool. Counting is
deterministic, costs nothing for the packaged templates and ~0.02-0.1 ms per override part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "ALLOWED_FILTERS", "ALLOWED_METHODS", "FORBIDDEN_FILTERS", "MAX_ARG_CHARS", "MAX_ARG_INT",
    "MAX_OUTPUT_CHARS", "MAX_RANGE", "GuardedSandbox", "RenderLimitExceeded", "RenderLimits",
    "Sandbox", "budget", "current_budget", "guarded_globals",
]

MAX_OUTPUT_CHARS = 100_000
"""Maximum size of one rendered part (subject, text, html...), in characters."""
MAX_RANGE = 10_000
MAX_ARG_CHARS = 10_000
MAX_ARG_INT = 100_000
MAX_INT_BITS = 4096

FORBIDDEN_FILTERS: dict[str, str] = {
    "safe": "values are HTML-escaped for you, and 'safe' would let customer data inject HTML",
    "attr": "it reads arbitrary attributes (use item access such as data.eta)",
    "format": "printf-style formatting can build huge strings (use ~ to join text)",
    "tojson": "raw JSON does not belong in a customer message",
    "pprint": "debug output does not belong in a customer message",
}
ALLOWED_FILTERS = frozenset(set(JINJA_FILTERS) - set(FORBIDDEN_FILTERS))
"""Jinja's built-in filters a tenant template may use (plus the project's own)."""

ALLOWED_METHODS = frozenset({
    "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
    "endswith", "split", "get", "keys", "values", "items", "isoformat", "weekday",
})
"""Methods of built-in values (str, dict, list, dates, numbers) a tenant template may call."""
_BUILTIN_VALUES = (str, bytes, list, tuple, dict, set, frozenset, int, float, Decimal, date,
                   datetime)


class RenderLimitExceeded(SecurityError):
    """A tenant template used more time, operations, memory or nesting than allowed."""


@dataclass(frozen=True)
class RenderLimits:
    """Per-part limits of a tenant template render (send time, preview and validation)."""

    timeout_s: float = 0.25
    max_ops: int = 200_000
    max_chars: int = MAX_OUTPUT_CHARS
    max_alloc_chars: int = 5_000_000
    max_depth: int = 40


class _Budget:
    __slots__ = ("alloc", "deadline", "depth", "limits", "ops")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.ops = 0
        self.alloc = 0
        self.depth = 0

    def tick(self, clock: bool = False) -> None:
        """One operation; the clock is read every 64 (or now, before costly work)."""
        self.ops += 1
        if self.ops > self.limits.max_ops:
            raise RenderLimitExceeded(f"more than {self.limits.max_ops:,} operations")
        if (clock or not self.ops & 63) and time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"took longer than {self.limits.timeout_s * 1000:.0f} ms")

    def emit(self, n: int) -> None:
        """``n`` characters of output were produced (into the result or any buffer)."""
        self.alloc += n
        if self.alloc > self.limits.max_alloc_chars:
            raise RenderLimitExceeded(
                f"built more than {self.limits.max_alloc_chars:,} characters in total")

    def size(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple | dict):
            n = len(value)
            if n > self.limits.max_chars:
                raise RenderLimitExceeded(
                    f"a value grew to {n:,} characters or items (limit {self.limits.max_chars:,})")
            self.alloc += n
            if self.alloc > self.limits.max_alloc_chars:
                raise RenderLimitExceeded(
                    f"built more than {self.limits.max_alloc_chars:,} characters in total")
        return value


_BUDGET: ContextVar[_Budget | None] = ContextVar("rsn_template_budget", default=None)


@contextmanager
def budget(limits: RenderLimits) -> Iterator[None]:
    """Apply ``limits`` to every guarded template rendered in this block (this thread)."""
    token = _BUDGET.set(_Budget(limits))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def current_budget() -> _Budget | None:
    """The budget of the render running in this thread (None outside ``budget``)."""
    return _BUDGET.get()


def _ensure_int(value: int, what: str) -> None:
    if abs(value).bit_length() > MAX_INT_BITS:
        raise RenderLimitExceeded(f"{what}: number too large")


# --------------------------------------------------------------------------- compiled code


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles ``for x in <iter>`` as ``for x in environment.guard_iter(<iter>)`` and every
    ``a ~ b`` as ``environment.guard_size(a ~ b)``."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        original = node.iter
        node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_iter", lineno=original.lineno),
                               [original], [], None, None, lineno=original.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = original

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guard_size(")
        super().visit_Concat(node, frame)
        self.write(")")

    # Every piece of output, wherever it goes (the result, or the buffer of a set-block,
    # macro, call or filter block, joined at once when the block ends), is counted first.
    def _output_const_repr(self, group: Iterable[Any]) -> str:
        return f"environment.guard_out({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.guard_out(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def simple_write(self, s: str, frame: Frame, node: nodes.Node | None = None) -> None:
        # included templates' and blocks' events, copied into a buffer or yielded
        super().simple_write(f"environment.guard_out({s})", frame, node)

    def writeline(self, x: str, node: nodes.Node | None = None, extra: int = 0) -> None:
        # ``yield from`` a block, a parent or an included template's body: counted too
        if x.startswith("yield from "):
            x = f"yield from environment.guard_stream({x[len('yield from '):]})"
        super().writeline(x, node, extra)


def _guarded_range(*args: int) -> range:
    for a in args:
        if isinstance(a, int):
            _ensure_int(a, "range")
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise RenderLimitExceeded(f"range() of more than {MAX_RANGE:,} items")
    return r


_DICT_ATTRS = frozenset(dir(dict))


class Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses ``'x' * 10**9``-style memory bombs (packaged
    templates render in this one)."""

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


class GuardedSandbox(Sandbox):
    """The sandbox of tenant templates: :class:`Sandbox` plus the runtime checks above."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def guard_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        b = _BUDGET.get()
        for item in iterable:
            if b is not None:
                b.tick()
            yield item

    def guard_size(self, value: Any) -> Any:
        b = _BUDGET.get()
        return b.size(value) if b is not None else value

    def guard_out(self, value: Any) -> Any:
        b = _BUDGET.get()
        if b is not None:
            b.emit(len(value))
        return value

    def guard_stream(self, events: Iterable[str]) -> Iterator[str]:
        b = _BUDGET.get()
        for event in events:
            if b is not None:
                b.emit(len(event))
            yield event

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        b = _BUDGET.get()
        if b is None:
            return super().call(context, obj, *args, **kwargs)
        b.tick()
        b.depth += 1
        try:
            if b.depth > b.limits.max_depth:
                raise RenderLimitExceeded(f"calls nested deeper than {b.limits.max_depth}")
            result = super().call(context, obj, *args, **kwargs)
        finally:
            b.depth -= 1
        return b.size(result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        b = _BUDGET.get()
        if b is not None:
            b.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        b = _BUDGET.get()
        if b is not None:
            b.tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja hands out a sandboxed str.format before asking is_safe_attribute; tenant
        # templates get no format at all ("{:>99999999}" would build 100 MB in one call).
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, _BUILTIN_VALUES) and callable(value) and attr not in ALLOWED_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        b = _BUDGET.get()
        if b is not None:
            b.tick()
        numbers = (int, float, Decimal)
        if operator == "*":
            if not (isinstance(left, numbers) and isinstance(right, numbers)):
                raise SecurityError("repeating strings or lists with * is not allowed")
            if isinstance(left, int) and isinstance(right, int):
                _ensure_int(left, "*")
                _ensure_int(right, "*")
        elif operator == "**":
            if not (isinstance(left, numbers) and isinstance(right, numbers)):
                raise SecurityError("** needs numbers")
            if isinstance(right, int) and isinstance(left, int) and (
                    abs(right) > 64 or abs(left).bit_length() * abs(right) > MAX_INT_BITS):
                raise RenderLimitExceeded("** result too large")
        elif operator == "%" and isinstance(left, str | bytes):
            raise SecurityError("printf-style % formatting is not allowed")
        result = super().call_binop(context, operator, left, right)
        return b.size(result) if b is not None else result


def guarded_globals() -> dict[str, Any]:
    """Replacements for Jinja's default globals: a capped ``range`` and no ``lipsum``."""
    return {"range": _guarded_range}
