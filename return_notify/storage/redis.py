"""The one way to build a Redis client: every side client (rate limiter, in-app pub/sub,
stream listener, health check, queue-depth metrics, the task drainer) comes from
``redis_client`` so that the broker URL, TLS, Sentinel and timeouts are interpreted once.

Celery's own connection is made by kombu from the same ``RSN_BROKER_URL``
(``config.celery`` turns it into kombu's form). URLs (``core.redis_urls``):

- ``redis://[:password@]host:port/db``
- ``rediss://…`` over TLS, certificate verified (``?ssl_ca_certs=/path/ca.pem``, …)
- ``sentinel://[:password@]host1:26379,host2:26379,host3:26379/db``: a client of the
  primary that ``RSN_REDIS_SENTINEL_MASTER`` names, found through the Sentinels and found
  again after a failover (a connection to a demoted primary is dropped and re-resolved).
"""

from __future__ import annotations

from typing import Any

from return_notify.config.settings import Settings, get_settings
from return_notify.core.redis_urls import parse_sentinel, scheme
from return_notify.errors import ConfigurationError

__all__ = ["redis_client", "redis_url", "sentinel_kwargs"]

#: bounds every exchange with a Sentinel (where is the primary?), even for blocking clients
SENTINEL_TIMEOUT_S = 5.0


def redis_url(settings: Settings | None = None) -> str:
    """The broker's Redis URL; ``ConfigurationError`` when ``RSN_BROKER_URL`` is unset."""
    url = (settings or get_settings()).broker_url
    if not url:
        raise ConfigurationError("RSN_BROKER_URL is not set: no Redis to connect to")
    return url


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options of the Sentinels themselves (their password, timeouts)."""
    out: dict[str, Any] = {"socket_connect_timeout": SENTINEL_TIMEOUT_S,
                           "socket_timeout": SENTINEL_TIMEOUT_S}
    if settings.redis_sentinel_password is not None:
        out["password"] = settings.redis_sentinel_password.get_secret_value()
    return out


def redis_client(settings: Settings | None = None, *, url: str | None = None,
                 asyncio: bool = False, timeout_s: float | None = 5.0,
                 **options: Any) -> Any:
    """A client of the broker's Redis (or of ``url``). ``timeout_s`` bounds connect and
    every command (``None``: block, for ``BLPOP``-style reads that pass their own
    ``socket_timeout``); other ``options`` go to redis-py (``decode_responses``, …).
    ``asyncio=True`` gives a ``redis.asyncio`` client (the API's live inbox)."""
    settings = settings or get_settings()
    target = url or redis_url(settings)
    kind = scheme(target)
    kwargs: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    kwargs.update(options)
    if kind == "sentinel":
        return _sentinel_primary(settings, target, asyncio, kwargs)
    if asyncio:
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(target, **kwargs)
    import redis

    return redis.Redis.from_url(target, **kwargs)


def _sentinel_primary(settings: Settings, url: str, asyncio: bool, kwargs: dict[str, Any]) -> Any:
    """A client of the current primary: each new connection asks the Sentinels where it is,
    and one that finds a demoted primary (``READONLY``) is dropped, so the next command goes
    to the new one."""
    target = parse_sentinel(url)
    if kwargs.get("socket_connect_timeout") is None:
        kwargs["socket_connect_timeout"] = SENTINEL_TIMEOUT_S
    if asyncio:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        sentinel: Any = AsyncSentinel(list(target.sentinels),
                                      sentinel_kwargs=sentinel_kwargs(settings))
    else:
        from redis.sentinel import Sentinel

        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs(settings))
    return sentinel.master_for(settings.redis_sentinel_master, db=target.db,
                               username=target.username, password=target.password, **kwargs)
