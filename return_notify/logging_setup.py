"""Logs: optional JSON lines (``RSN_LOG_JSON``), ids from ``log_context`` on every line,
and e-mail addresses and phone numbers masked wherever they appear in a message.

In workers and beat it is wired through Celery's ``after_setup_logger`` and
``after_setup_task_logger`` signals (Celery keeps choosing handlers, log file and level;
this module adds the context filter and, with ``RSN_LOG_JSON=true``, the JSON formatter).
Other processes (the API, the CLI) call ``setup_logging()``.

``log_context(event_id=..., delivery_id=...)`` binds ids for the current thread or task
(contextvars): every line logged inside carries them. Threads started inside (a channel's
send pool) do not inherit them; those lines name the delivery in their message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger

from return_notify.masking import mask

#: keys every JSON line has, null when unbound
ALWAYS = ("event_id", "delivery_id")
#: context keys whose values are recipients: masked before they are written
RECIPIENT_KEYS = frozenset({"recipient", "email", "phone", "to"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("rsn_log_context", default=_EMPTY)

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}\b")


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind ids (``event_id``, ``delivery_id``, ``tenant`` …) to every log line inside.

    Nested contexts add to (and override) the outer one; ``None`` values are ignored.
    """
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


def scrub(text: str) -> str:
    """Mask every e-mail address and E.164 phone number in ``text``."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask(m.group(0)), text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask(m.group(0)), text)
    return text


def _safe(key: str, value: Any) -> Any:
    if key in RECIPIENT_KEYS and isinstance(value, str):
        return mask(value)
    return value


class ContextFilter(logging.Filter):
    """Adds the bound ids to each record and masks recipients in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        record.rsn_context = ctx
        for key in ALWAYS:
            setattr(record, key, ctx.get(key))
        if not getattr(record, "rsn_scrubbed", False):
            message = record.getMessage()
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
            record.rsn_scrubbed = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, event_id, delivery_id, the
    other bound ids, the Celery task (inside one), process id and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        ctx: Mapping[str, Any] = getattr(record, "rsn_context", None) or _context.get()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key in ALWAYS:
            out[key] = _safe(key, ctx.get(key))
        for key, value in ctx.items():
            if key not in out:
                out[key] = _safe(key, value)
        task = _current_task()
        if task is not None:
            out.setdefault("task_id", task[0])
            out.setdefault("task", task[1])
        out["process"] = record.process
        if record.exc_info:
            out["exc_info"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


def _current_task() -> tuple[str, str] | None:
    try:
        from celery._state import get_current_task

        task = get_current_task()
    except Exception:  # noqa: BLE001 - logging never fails
        return None
    if task is None or task.request is None or not task.request.id:
        return None
    return str(task.request.id), str(task.name)


def configure_handlers(logger: logging.Logger, json_logs: bool) -> None:
    """Add the context filter (and the JSON formatter) to ``logger``'s handlers."""
    for handler in logger.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if json_logs:
            handler.setFormatter(JsonFormatter())


def _json_enabled() -> bool:
    from return_notify.config.settings import get_settings

    return get_settings().log_json


@after_setup_logger.connect
def _celery_root_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        configure_handlers(logger, _json_enabled())


@after_setup_task_logger.connect
def _celery_task_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        configure_handlers(logger, _json_enabled())


def setup_logging(level: str | int = "INFO", json_logs: bool | None = None) -> None:
    """For processes Celery does not set up (API, CLI): one stderr handler on the root."""
    json_logs = _json_enabled() if json_logs is None else json_logs
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    root.handlers = [h for h in root.handlers if getattr(h, "rsn_handler", False) is False]
    handler.rsn_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
