"""Shared fixtures: real Redis and PostgreSQL for every integration test.

With RSN_BROKER_URL and RSN_DATABASE_URL set (CI), tests use those servers, each run in
its own freshly created database and its own Redis key prefix; otherwise they start
embedded servers from the `embedded` extra. Nothing is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

_KEYS = ("RSN_BROKER_URL", "RSN_DATABASE_URL", "RSN_REDIS_KEY_PREFIX")


def pytest_configure(config: pytest.Config) -> None:
    # Quiet hours and throttles depend on the time of day: tests that exercise them turn
    # them on themselves; every other test (and the workers it starts) sees them off.
    os.environ.setdefault("RSN_QUIET_HOURS_ENABLED", "false")
    os.environ.setdefault("RSN_THROTTLE_MIN_INTERVALS", "")
    # The KPI aggregates are rolled up by the tests that mean to (in a database of their
    # own): beat started by other tests must not roll the shared database up mid-test.
    os.environ.setdefault("RSN_STATS_ROLLUP_INTERVAL_S", "86400")


@dataclass(frozen=True)
class Services:
    broker_url: str
    database_url: str
    redis_key_prefix: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"RSN_BROKER_URL": self.broker_url, "RSN_DATABASE_URL": self.database_url,
                "RSN_REDIS_KEY_PREFIX": self.redis_key_prefix, **extra}


def _admin_url(url: str) -> str:
    u = make_url(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    return u.set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    broker = os.environ.get("RSN_BROKER_URL")
    database = os.environ.get("RSN_DATABASE_URL")
    tag = uuid.uuid4().hex[:10]
    embedded = None
    if not (broker and database):
        from return_notify.devtools.embedded import EmbeddedServers

        embedded = EmbeddedServers(redis=not broker, postgres=not database).start()
        broker = broker or embedded.redis_url
        database = database or embedded.database_url
    base = make_url(database.replace("postgresql://", "postgresql+psycopg2://", 1))
    db_name = f"rsn_test_{tag}"
    admin = create_engine(_admin_url(database), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    svc = Services(broker, base.set(database=db_name).render_as_string(hide_password=False),
                   f"rsn-test-{tag}:")
    saved = {k: os.environ.get(k) for k in _KEYS}
    _apply(svc)
    from return_notify.storage.migrate import upgrade

    upgrade()
    try:
        yield svc
    finally:
        from return_notify.storage.db import dispose_engine

        dispose_engine()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        _flush_prefix(broker, svc.redis_key_prefix)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if embedded is not None:
            embedded.stop()


def _apply(svc: Services) -> None:
    """Point this process at the test services (and forget per-process caches)."""
    from return_notify.channels.registry import reset_channels
    from return_notify.config.settings import reset_settings
    from return_notify.pipeline.ingest import forget_tenants
    from return_notify.storage.db import dispose_engine

    changed = any(os.environ.get(k) != v for k, v in svc.env().items())
    os.environ.update(svc.env())
    if changed:
        reset_settings()
        dispose_engine()
        reset_channels()
        forget_tenants()
        import sys

        if "return_notify.workers.app" in sys.modules:
            sys.modules["return_notify.workers.app"].reconfigure()


def _flush_prefix(broker: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(broker)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@pytest.fixture
def svc(services: Services) -> Services:
    """The test services, re-applied to this process's environment for each test."""
    _apply(services)
    return services
