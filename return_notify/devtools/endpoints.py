"""Find the Redis and PostgreSQL to use: the configured ones, or embedded servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from return_notify.config.settings import get_settings, reset_settings

#: the unsubscribe secret of local runs (demo, benchmarks, chaos) when none is configured
DEV_UNSUBSCRIBE_SECRET = "return-notify-local-runs-only"


@dataclass(frozen=True)
class Endpoints:
    broker_url: str
    database_url: str
    embedded: bool

    def env(self, **extra: str) -> dict[str, str]:
        """``RSN_*`` of the processes the demo, the benchmarks and chaos runs start; with an
        unsubscribe secret (the one set, else a throwaway one): a worker sending through a
        real email SDK, even to a local server, refuses to start without one."""
        return {"RSN_BROKER_URL": self.broker_url, "RSN_DATABASE_URL": self.database_url,
                "RSN_UNSUBSCRIBE_SECRET": os.environ.get("RSN_UNSUBSCRIBE_SECRET")
                or DEV_UNSUBSCRIBE_SECRET, **extra}


@contextmanager
def servers(log: callable | None = None) -> Iterator[Endpoints]:  # type: ignore[valid-type]
    """Yield endpoints; with RSN_BROKER_URL/RSN_DATABASE_URL unset, start embedded servers
    for the duration and export their URLs to this process's environment."""
    s = get_settings()
    if s.broker_url and s.database_url:
        yield Endpoints(s.broker_url, s.database_url, embedded=False)
        return
    from return_notify.devtools.embedded import EmbeddedServers

    with EmbeddedServers(redis=not s.broker_url, postgres=not s.database_url) as emb:
        broker = s.broker_url or emb.redis_url
        database = s.database_url or emb.database_url
        saved = {k: os.environ.get(k) for k in ("RSN_BROKER_URL", "RSN_DATABASE_URL")}
        os.environ["RSN_BROKER_URL"], os.environ["RSN_DATABASE_URL"] = broker, database
        reset_settings()
        try:
            yield Endpoints(broker, database, embedded=True)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset_settings()


@contextmanager
def scratch_database(ep: Endpoints, purpose: str = "bench") -> Iterator[Endpoints]:
    """A new, empty database on ``ep``'s PostgreSQL for one run, dropped afterwards.

    A benchmark that wrote into the configured database would measure a little more bloat
    (dead rows of every earlier run) each time, and leave its rows behind. Embedded servers
    are already fresh and are used as they are. This process's ``RSN_DATABASE_URL`` points at
    the scratch database meanwhile (the worker processes it starts get ``ep.env()``).
    """
    if ep.embedded:
        yield ep
        return
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(ep.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    name = f"rsn_{purpose}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.set(database="postgres").render_as_string(hide_password=False),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(ep.database_url).set(database=name).render_as_string(hide_password=False)
    saved = os.environ.get("RSN_DATABASE_URL")
    os.environ["RSN_DATABASE_URL"] = scratch
    reset_settings()
    try:
        yield Endpoints(ep.broker_url, scratch, embedded=False)
    finally:
        from return_notify.storage.db import dispose_engine

        dispose_engine()
        if saved is None:
            os.environ.pop("RSN_DATABASE_URL", None)
        else:
            os.environ["RSN_DATABASE_URL"] = saved
        reset_settings()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_keys(ep: Endpoints, prefix: str) -> Iterator[None]:
    """Every Redis key of one run (all under its own ``prefix``: queues, kombu's bindings,
    unacknowledged messages, rate-limit windows) deleted afterwards, so that a benchmark
    against a configured Redis leaves nothing behind. Trouble reaching Redis at the end is
    reported, not raised: the run's figures stand."""
    try:
        yield
    finally:
        import redis

        client = redis.Redis.from_url(ep.broker_url)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start:start + 1000])
        except redis.RedisError as exc:
            import sys

            print(f"could not delete the run's Redis keys ({prefix}*): {exc}", file=sys.stderr)
        finally:
            client.close()
