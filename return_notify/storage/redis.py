"""The one way to build a Redis client: every side client (rate limiter, in-app pub/sub,
stream listener, health check, queue-depth metrics) comes from ``redis_client`` so that the
broker URL, TLS and timeouts are interpreted once.

Celery's own connection is made by kombu from the same ``RSN_BROKER_URL``. URLs:
``redis://[:password@]host:port/db`` and ``rediss://…`` (TLS; ``?ssl_cert_reqs=…`` and the
other redis-py URL options apply).
"""

from __future__ import annotations

from typing import Any

from return_notify.config.settings import Settings, get_settings
from return_notify.errors import ConfigurationError

__all__ = ["redis_client", "redis_url"]


def redis_url(settings: Settings | None = None) -> str:
    """The broker's Redis URL; ``ConfigurationError`` when ``RSN_BROKER_URL`` is unset."""
    url = (settings or get_settings()).broker_url
    if not url:
        raise ConfigurationError("RSN_BROKER_URL is not set: no Redis to connect to")
    return url


def redis_client(settings: Settings | None = None, *, url: str | None = None,
                 asyncio: bool = False, timeout_s: float | None = 5.0,
                 **options: Any) -> Any:
    """A client of the broker's Redis (or of ``url``). ``timeout_s`` bounds connect and
    every command (``None``: block, for ``BLPOP``-style reads that pass their own
    ``socket_timeout``); other ``options`` go to redis-py (``decode_responses``, …).
    ``asyncio=True`` gives a ``redis.asyncio`` client (the API's live inbox)."""
    target = url or redis_url(settings)
    kwargs: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    kwargs.update(options)
    if asyncio:
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(target, **kwargs)
    import redis

    return redis.Redis.from_url(target, **kwargs)
