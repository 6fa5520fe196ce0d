"""kombu's Redis transport with one client object per channel for what it sends.

For every message it sends (a task, a task event, a deliver message), kombu's Redis
channel builds a new ``redis.Redis`` object (``Channel.conn_or_acquire``), and redis-py
fills its command-callback table (about 80 entries) each time: measured 80 µs of CPU per
message, a fifth of a ``publish()``. The object holds no connection of its own (each
command borrows one from the channel's connection pool), so one per channel and pool
sends the same commands through the same connections.

``BrokerAMQP`` is the Celery ``amqp`` class of the worker app and the producer app; any
transport other than plain Redis (Sentinel, a memory broker in tests) is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.app.amqp import AMQP
from kombu import Connection
from kombu.connection import ConnectionPool, PooledConnection
from kombu.transport import redis as kombu_redis


class _Channel(kombu_redis.Channel):
    _sending_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # a new pool after a disconnect: a new client with it
        cached = self._sending_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._sending_client = self.Client(connection_pool=pool)
        yield cached


class _Transport(kombu_redis.Transport):
    Channel = _Channel


class _SendingClient:
    def get_transport_cls(self) -> Any:
        cls = super().get_transport_cls()  # type: ignore[misc]
        return _Transport if cls is kombu_redis.Transport else cls


class _PooledConnection(_SendingClient, PooledConnection):  # type: ignore[misc]
    pass


class _ConnectionPool(ConnectionPool):  # type: ignore[misc]
    """Celery's producers and ``producer_or_acquire`` use pooled copies of the connection."""

    def new(self) -> Any:
        return _PooledConnection(self, **dict(self.connection._info(resolve=False)))


class _Connection(_SendingClient, Connection):  # type: ignore[misc]
    def Pool(self, limit: int | None = None, **kwargs: Any) -> Any:  # noqa: N802 - kombu's
        return _ConnectionPool(self, limit=limit, **kwargs)


class BrokerAMQP(AMQP):  # type: ignore[misc]
    Connection = _Connection
