"""Logs: optional JSON lines (``RSN_LOG_JSON``), ids from ``log_context`` on every line,
and e-mail addresses and phone numbers masked wherever they appear in a message.

In workers and beat, ``workers/signals.py`` calls ``configure_handlers`` from Celery's
``after_setup_logger`` and ``after_setup_task_logger`` signals (Celery keeps choosing
handlers, log file and level; this module adds the context filter and, with
``RSN_LOG_JSON=true``, the JSON formatter). This module imports no Celery. Other processes
call ``setup_logging()``; the API server (uvicorn, every server process) is configured
with ``uvicorn_log_config()``.

``log_context(event_id=..., delivery_id=...)`` binds ids for the current thread or task
(contextvars): every line logged inside carries them. Threads started inside (a channel's
send pool) do not inherit them; those lines name the delivery in their message.
``bind_task_ids(task_name, ids_of)`` binds a task's ids (read from its arguments) for its
whole run in the pool process, from ``enter_task`` to ``exit_task`` (Celery's
``task_prerun`` and ``task_postrun``): Celery's own lines about the task (succeeded,
retry, failed) carry them too.

Provider SDK loggers that write request details at INFO/DEBUG (Twilio logs every request's
headers and parameters, the SendGrid client its payload and headers) are held at WARNING
(``SDK_LOGGERS``), whatever the process's level: their errors still show.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from return_notify.core.masking import mask

#: keys every JSON line has, null when unbound
ALWAYS = ("event_id", "delivery_id")
#: context keys whose values are recipients: masked before they are written
RECIPIENT_KEYS = frozenset({"recipient", "email", "phone", "to"})

#: SDK loggers that log request parameters and headers below WARNING: held at WARNING
SDK_LOGGERS = ("twilio.http_client", "twilio.async_http_client", "python_http_client")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("rsn_log_context", default=_EMPTY)

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}\b")
#: the same percent-encoded, as in request paths and query strings (access log lines)
_EMAIL_URL = re.compile(r"(?<![\w.+-])([\w.+-]{1,64})%40([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                        r"\.[A-Za-z]{2,})", re.IGNORECASE)
_PHONE_URL = re.compile(r"%2B([1-9]\d{6,14})\b", re.IGNORECASE)

REDACTED = "[redacted]"
#: secrets in URLs and headers: ``?token=`` (inbox bearer, Shippo webhook secret) and other
#: credential-like query parameters, one-click unsubscribe tokens in paths, Bearer values,
#: and the system's own key and token formats wherever they appear
_SECRET_PARAM = re.compile(
    r"(?i)((?:^|[?&;\s\"'])(?:token|access_token|auth_token|secret|api_key|apikey|key|"
    r"password|passwd|signature|sig|code)=)[^&\s\"';]+")
_SECRET_PATH = re.compile(r"(/v1/unsubscribe/)[^/?#\s\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_OWN_SECRETS = re.compile(
    r"\b(?:rsnp?_[0-9a-f]{6,}_[0-9a-f]{8,}|i1\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|"
    r"u1\.[A-Za-z0-9_-]{16,})")


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


def redact_secrets(text: str) -> str:
    """``text`` without tokens and credentials: query parameters such as ``token=`` and
    ``key=``, unsubscribe tokens in paths, ``Bearer`` values, API keys and inbox tokens."""
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    if "/v1/unsubscribe/" in text:
        text = _SECRET_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if "rsn" in text or "1." in text:
        text = _OWN_SECRETS.sub(REDACTED, text)
    return text


def scrub(text: str) -> str:
    """Mask every e-mail address and E.164 phone number in ``text`` (percent-encoded too)
    and redact secrets (:func:`redact_secrets`)."""
    text = redact_secrets(text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask(m.group(0)), text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask(m.group(0)), text)
    if "%" in text:
        text = _EMAIL_URL.sub(lambda m: mask(f"{m.group(1)}@{m.group(2)}").replace("@", "%40"),
                              text)
        text = _PHONE_URL.sub(lambda m: "%2B" + mask("+" + m.group(1))[1:], text)
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
            # a traceback is text too (an exception's message can hold an address, a URL
            # with a token): formatted once here, scrubbed, and kept where every formatter
            # (plain, Celery's, JSON) takes it from
            if record.exc_info and not record.exc_text:
                record.exc_text = scrub(format_exception(record.exc_info))
            elif record.exc_text:
                record.exc_text = scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
            record.rsn_scrubbed = True
        return True


#: what a database error's text becomes in a traceback: PostgreSQL quotes the offending
#: value in it ('invalid input syntax for type integer: "ana@example.com"'), and the
#: statement with its values (the engine's ``hide_parameters`` hides only SQLAlchemy's copy)
DATABASE_ERROR_HIDDEN = "(the database's error text is not logged: it can quote personal data)"


def _database_error(exc_type: type[BaseException] | None) -> bool:
    return exc_type is not None and any(
        c.__module__.startswith(("sqlalchemy.exc", "psycopg2")) for c in exc_type.__mro__)


def format_exception(exc_info: Any) -> str:
    """A traceback as ``logging`` writes it, with every database error's text (in the chain
    of causes too) replaced by :data:`DATABASE_ERROR_HIDDEN`."""
    te = traceback.TracebackException(*exc_info)
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if _database_error(t.exc_type):
            t._str = DATABASE_ERROR_HIDDEN  # type: ignore[attr-defined]  # printed after the type
        stack.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return "".join(te.format()).rstrip("\n")


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
        if record.exc_info or record.exc_text:
            out["exc_info"] = scrub(record.exc_text or format_exception(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


#: ``() -> (task id, task name) | None``: the task running in this thread, set by the
#: process that runs tasks (``workers/signals.py``); JSON lines carry it
_task_lookup: Callable[[], tuple[str, str] | None] | None = None


def set_task_lookup(lookup: Callable[[], tuple[str, str] | None] | None) -> None:
    """Name the running task on every JSON line (the worker passes Celery's lookup)."""
    global _task_lookup
    _task_lookup = lookup


def _current_task() -> tuple[str, str] | None:
    if _task_lookup is None:
        return None
    try:
        return _task_lookup()
    except Exception:  # noqa: BLE001 - logging never fails
        return None


def quiet_sdk_loggers() -> None:
    """Hold the provider SDKs' request loggers (``SDK_LOGGERS``) at WARNING."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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


def configure_celery_logger(logger: logging.Logger | None, *, root: bool) -> None:
    """What a Celery logger gets once Celery set it up (root: the SDK loggers are quieted)."""
    if root:
        quiet_sdk_loggers()
    if logger is not None:
        configure_handlers(logger, _json_enabled())


# ------------------------------------------------------------------ task ids ------------

IdsOf = Callable[[Sequence[Any], Mapping[str, Any]], Mapping[str, Any]]
_task_ids: dict[str, IdsOf] = {}
_task_tokens: dict[str, Token[Mapping[str, Any]]] = {}


def bind_task_ids(task_name: str, ids_of: IdsOf) -> None:
    """Bind ``ids_of(args, kwargs)`` (e.g. ``{"delivery_id": 42}``) to every line logged while
    a ``task_name`` task runs in this process, Celery's own lines about it included."""
    _task_ids[task_name] = ids_of


def enter_task(task_name: str | None, task_id: str | None, args: Any = None,
               kwargs: Any = None) -> None:
    """A task starts in this process: bind its ids (``bind_task_ids``) until ``exit_task``."""
    ids_of = _task_ids.get(task_name or "")
    if ids_of is None or task_id is None:
        return
    try:
        ids = ids_of(tuple(args or ()), dict(kwargs or {}))
    except Exception:  # noqa: BLE001 - logging never fails a task (odd arguments: no ids)
        return
    current = _context.get()
    _task_tokens[task_id] = _context.set(
        {**current, **{k: v for k, v in ids.items() if v is not None}})


def exit_task(task_id: str | None) -> None:
    """The task ended: unbind what ``enter_task`` bound."""
    token = _task_tokens.pop(task_id or "", None)
    if token is None:
        return
    try:
        _context.reset(token)
    except ValueError:  # set in another context (cannot happen with Celery's pools)
        _context.set(_EMPTY)


def ids_or_list(key: str, values: Sequence[Any]) -> dict[str, Any]:
    """``{key: v}`` for one value, ``{key + "s": [...]}`` for a batch (never both)."""
    values = list(values)
    if len(values) == 1:
        return {key: values[0]}
    return {key + "s": values} if values else {}


# ------------------------------------------------------------------ other processes -----

_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO", json_logs: bool | None = None) -> None:
    """For processes Celery does not set up (API, CLI): one stderr handler on the root."""
    json_logs = _json_enabled() if json_logs is None else json_logs
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(_PLAIN))
    handler.addFilter(ContextFilter())
    root.handlers = [h for h in root.handlers if getattr(h, "rsn_handler", False) is False]
    handler.rsn_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    quiet_sdk_loggers()


def uvicorn_log_config(level: str = "INFO", json_logs: bool | None = None) -> dict[str, Any]:
    """``setup_logging`` as a ``logging.config.dictConfig`` dict, for uvicorn's ``log_config``:
    uvicorn applies it in every server process (``--workers N`` spawns fresh ones, which a
    ``setup_logging()`` call in the parent would not reach). Its own loggers propagate to
    the root handler, so access and error lines are JSON too with ``RSN_LOG_JSON=true``."""
    json_logs = _json_enabled() if json_logs is None else json_logs
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if json_logs
                                 else {"format": _PLAIN})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"rsn_context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"rsn": formatter},
        "handlers": {"rsn": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                             "formatter": "rsn", "filters": ["rsn_context"]}},
        "root": {"handlers": ["rsn"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": level.upper()}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            **{name: {"level": "WARNING"} for name in SDK_LOGGERS},
        },
    }
