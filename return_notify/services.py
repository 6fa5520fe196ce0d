"""Find the Redis and PostgreSQL to use: the configured ones, or embedded servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from return_notify.config.settings import get_settings, reset_settings


@dataclass(frozen=True)
class Endpoints:
    broker_url: str
    database_url: str
    embedded: bool

    def env(self, **extra: str) -> dict[str, str]:
        return {"RSN_BROKER_URL": self.broker_url, "RSN_DATABASE_URL": self.database_url, **extra}


@contextmanager
def servers(log: callable | None = None) -> Iterator[Endpoints]:  # type: ignore[valid-type]
    """Yield endpoints; with RSN_BROKER_URL/RSN_DATABASE_URL unset, start embedded servers
    for the duration and export their URLs to this process's environment."""
    s = get_settings()
    if s.broker_url and s.database_url:
        yield Endpoints(s.broker_url, s.database_url, embedded=False)
        return
    from return_notify.embedded import EmbeddedServers

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
