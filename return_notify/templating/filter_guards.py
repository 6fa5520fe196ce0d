"""The guarded sandbox's filters: each filter call is an operation of the render's budget, its
arguments are capped, and the filters that could build a huge value from small input
(``join``, ``replace``, ``center``, ``indent``, ``wordwrap``, ``batch``, ``slice``,
``urlize``) are checked before they run, by their arguments' names. See
``templating.sandbox`` for the budget itself."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from jinja2.utils import _PassArg

from return_notify.templating.sandbox import (
    FORBIDDEN_FILTERS,
    MAX_ARG_CHARS,
    MAX_ARG_INT,
    RenderLimitExceeded,
    current_budget,
)

__all__ = ["Precheck", "guard_filters"]


Precheck = Callable[[Any, dict[str, Any], int], Any]
"""``(value, the call's arguments by name, size limit) -> value``: raises before a filter
that would build something too large runs (and may hand it a list made of an iterator)."""


def _pre_join(value: Any, args: dict[str, Any], limit: int) -> Any:
    items = list(value)
    sep = args.get("d")
    sep = sep if isinstance(sep, str) else ""
    total = sum(len(str(x)) for x in items) + len(sep) * max(0, len(items) - 1)
    if total > limit:
        raise RenderLimitExceeded(f"join would build {total:,} characters")
    return items


def _pre_replace(value: Any, args: dict[str, Any], limit: int) -> Any:
    text, old, new = str(value), str(args.get("old", "")), str(args.get("new", ""))
    n = text.count(old) if old else len(text) + 1
    count = args.get("count")
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    if len(text) + n * (len(new) - len(old)) > limit:
        raise RenderLimitExceeded("replace would build a value that is too large")
    return value


def _pre_indent(value: Any, args: dict[str, Any], limit: int) -> Any:
    width = args.get("width", 4)
    pad = width if isinstance(width, int) else len(str(width))
    if pad > 16:
        raise RenderLimitExceeded("indent of more than 16 characters")
    text = str(value)
    if len(text) + (text.count("\n") + 1) * max(pad, 0) > limit:
        raise RenderLimitExceeded("indent would build a value that is too large")
    return value


def _pre_wordwrap(value: Any, args: dict[str, Any], limit: int) -> Any:
    text = str(value)
    width = args.get("width", 79)
    wrap = args.get("wrapstring")
    wrap_len = len(wrap) if isinstance(wrap, str) else 1
    if wrap_len > 16:
        raise RenderLimitExceeded("a wrapstring of more than 16 characters")
    if not isinstance(width, int) or width < 1:
        return value  # the filter itself refuses it
    lines = len(text) // width + len(text.split()) + 1  # at most, however words break
    if len(text) + lines * wrap_len > limit:
        raise RenderLimitExceeded("wordwrap would build a value that is too large")
    return value


def _short_input(cap: int) -> Precheck:
    def check(value: Any, args: dict[str, Any], limit: int) -> Any:
        if isinstance(value, str) and len(value) > cap:
            raise RenderLimitExceeded(f"input of {len(value):,} characters (at most {cap:,})")
        return value
    return check


def _cap(cap: int) -> Precheck:
    def check(value: Any, args: dict[str, Any], limit: int) -> Any:
        for name, p in args.items():
            if name in ("value", "s", "environment", "eval_ctx", "context"):
                continue
            if isinstance(p, int) and p > cap or isinstance(p, str) and len(p) > cap:
                raise RenderLimitExceeded(f"argument is too large (at most {cap})")
        return value
    return check


_PRECHECKS: dict[str, Precheck] = {
    "join": _pre_join, "replace": _pre_replace, "center": _cap(1000), "indent": _pre_indent,
    "wordwrap": _pre_wordwrap, "batch": _cap(1000), "slice": _cap(1000),
    "urlize": _short_input(20_000),
}


def _arguments(signature: inspect.Signature | None, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments by parameter name (None: the call does not fit the filter,
    which then raises its own error)."""
    if signature is None:
        return {}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    pre = _PRECHECKS.get(name)
    signature = inspect.signature(func) if pre is not None else None

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = current_budget()
        if b is None:
            return func(*args, **kwargs)
        b.tick(clock=True)
        params = [*args[skip + 1:], *kwargs.values()]
        for p in params:
            if isinstance(p, int) and not isinstance(p, bool) and abs(p) > MAX_ARG_INT:
                raise RenderLimitExceeded(f"filter {name!r}: argument {p} is too large")
            if isinstance(p, str) and len(p) > MAX_ARG_CHARS:
                raise RenderLimitExceeded(f"filter {name!r}: argument is too long")
        if pre is not None and len(args) > skip:
            named = _arguments(signature, args, kwargs)
            if named is not None:
                try:
                    value = pre(args[skip], named, b.limits.max_chars)
                except RenderLimitExceeded as exc:
                    raise RenderLimitExceeded(f"filter {name!r}: {exc}") from None
                args = (*args[:skip], value, *args[skip + 1:])
        return b.size(func(*args, **kwargs))

    return guarded


def guard_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The allowed filters of ``filters``, each wrapped with the runtime checks."""
    return {name: _guard_filter(name, f) for name, f in filters.items()
            if name not in FORBIDDEN_FILTERS}
