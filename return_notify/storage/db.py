"""Engine and sessions, built lazily once per process (never at import time).

Every connection names its process kind to PostgreSQL (``application_name``
``return-notify-worker``, ``-beat``, ``-api`` or ``-cli``: ``pg_stat_activity`` shows who
holds connections) and carries ``RSN_DB_STATEMENT_TIMEOUT_MS``; each process keeps
``RSN_DB_POOL_SIZE`` connections and opens up to ``RSN_DB_MAX_OVERFLOW`` more under load.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from return_notify.config.settings import get_settings
from return_notify.errors import ConfigurationError
from return_notify.storage import pg_arrays

# lists go to PostgreSQL as one array literal, not ARRAY[...] of quoted elements (pg_arrays)
pg_arrays.install()

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_factory: sessionmaker[Session] | None = None

#: the environment variable that carries the process kind to the processes a command
#: starts (prefork pool children, uvicorn's server processes)
PROCESS_KIND_ENV = "RSN_PROCESS_KIND"
PROCESS_KINDS = ("worker", "beat", "api", "cli")


def set_process_kind(kind: str) -> None:
    """Name this process (and those it starts) ``kind`` for PostgreSQL; before any connection."""
    if kind not in PROCESS_KINDS:
        raise ValueError(f"unknown process kind {kind!r}")
    os.environ[PROCESS_KIND_ENV] = kind


def application_name() -> str:
    """``PGAPPNAME`` if the operator set it, else ``return-notify-<process kind>``."""
    kind = os.environ.get(PROCESS_KIND_ENV, "cli")
    return os.environ.get("PGAPPNAME") or f"return-notify-{kind if kind in PROCESS_KINDS else 'cli'}"


def connect_args() -> dict[str, object]:
    """libpq parameters of every connection: its name, the statement timeout, and a bound on
    connecting (a silent host fails in seconds, not after the kernel's TCP timeout)."""
    args: dict[str, object] = {"application_name": application_name(), "connect_timeout": 10}
    timeout_ms = get_settings().db_statement_timeout_ms
    if timeout_ms:
        args["options"] = f"-c statement_timeout={int(timeout_ms)}"
    return args


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise ConfigurationError(
            "RSN_DATABASE_URL is not set. Set it (e.g. postgresql+psycopg2://user@host/db) "
            "or run `return-notify demo`, which starts embedded servers."
        )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


#: ping each connection as it is checked out of the pool (a round trip per session); the
#: worker's pool processes turn it off (``skip_pre_ping``): every task there retries a lost
#: connection, and SQLAlchemy replaces the pool's other connections on the first failure
_pre_ping = True


def skip_pre_ping() -> None:
    """This process's sessions skip the checkout ping (worker pool processes)."""
    global _pre_ping
    _pre_ping = False
    dispose_engine()


#: each engine's URL as text, the key of per-database caches (spelling a URL out costs
#: 1.5 µs, and the rules and preferences caches look one up per event)
_url_keys: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_key(session: Session) -> str:
    """Which database ``session`` is bound to, as its URL's text: the key under which
    per-process caches keep what they read (tests run several databases in one process)."""
    engine = session.get_bind().engine
    key = _url_keys.get(engine)
    if key is None:
        key = _url_keys[engine] = str(engine.url)
    return key


def get_engine() -> Engine:
    """The process's engine; a forked child (prefork pool) gets its own, never the parent's."""
    global _engine, _engine_pid, _factory
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            if _engine is not None:
                _engine.dispose(close=False)
            settings = get_settings()
            _engine = create_engine(
                database_url(),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_pre_ping=_pre_ping,
                connect_args=connect_args(),
                pool_recycle=1800,
                future=True,
                # an error's text never carries the statement's parameters: they hold
                # addresses, numbers and names (a poison event's traceback printed them)
                hide_parameters=True,
            )
            _engine_pid = os.getpid()
            _factory = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def dispose_engine() -> None:
    global _engine, _factory
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _factory = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: commit on success, roll back on error."""
    get_engine()
    assert _factory is not None
    session = _factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
