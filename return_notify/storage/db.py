"""Engine and sessions, built lazily once per process (never at import time)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from return_notify.config.settings import get_settings
from return_notify.errors import ConfigurationError

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_factory: sessionmaker[Session] | None = None


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
                max_overflow=5,
                pool_pre_ping=True,
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
