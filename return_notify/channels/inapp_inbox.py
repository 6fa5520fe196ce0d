"""The in-app provider: writes ``inbox_items`` (its own store) and announces them on Redis.

Like an external provider's store, the inbox is written in the channel's own short
transaction, never inside the pipeline's. ``send_many`` does one bulk insert (idempotent
per delivery: a resend after a lost write-back returns the same item) and one pipelined
round of ``PUBLISH`` to ``{prefix}inbox:{tenant}:{customer_id}`` for live clients.

``OutboundMessage`` fields used: ``recipient`` = customer id, ``tenant`` = slug,
``subject`` = title, ``text`` = body, and ``metadata`` keys ``milestone``, ``return_id``,
``cta_url`` (all optional; a ``cta_url`` that is not https, or this service's own status
page, is dropped: a retailer's app opens it as it is).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis
from sqlalchemy import Engine

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.config.settings import get_settings
from return_notify.core.urls import https_url
from return_notify.errors import DeliveryError, PermanentError, TransientError
from return_notify.inbox import inbox_channel_name, item_json
from return_notify.storage.redis import redis_client as new_redis_client
from return_notify.storage.statements import Statement
from return_notify.storage.tenants import find_tenant_ids

log = logging.getLogger(__name__)

_INSERT = Statement("""
INSERT INTO inbox_items (tenant_id, customer_id, delivery_id, title, body, cta_url,
                         milestone, return_id)
SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:cids AS text[]), CAST(:dids AS bigint[]),
                     CAST(:titles AS text[]), CAST(:bodies AS text[]), CAST(:ctas AS text[]),
                     CAST(:ms AS text[]), CAST(:rids AS text[]))
ON CONFLICT (delivery_id) DO UPDATE SET delivery_id = EXCLUDED.delivery_id
RETURNING id, delivery_id, title, body, cta_url, milestone, return_id, created_at, read_at,
          (xmax = 0) AS inserted
""")


class InboxChannel(Channel):
    """In-app notifications into the customer inbox, with live push over Redis pub/sub."""

    provider = "inbox"
    channel = "inapp"

    def __init__(
        self,
        engine: Engine | None = None,
        redis_client: redis.Redis | None = None,
        key_prefix: str | None = None,
    ) -> None:
        self._engine = engine
        self._redis = redis_client
        self._key_prefix = key_prefix
        self._tenants: dict[str, int] = {}
        self._lock = threading.Lock()

    # built lazily: no I/O at construction, and a forked worker builds its own
    def _deps(self) -> tuple[Engine, redis.Redis, str]:
        with self._lock:
            if self._engine is None or self._redis is None or self._key_prefix is None:
                from return_notify.config.settings import get_settings
                from return_notify.storage.db import get_engine

                settings = get_settings()
                self._engine = self._engine or get_engine()
                if self._key_prefix is None:
                    self._key_prefix = settings.redis_key_prefix
                if self._redis is None:
                    if not settings.broker_url:
                        raise TransientError("RSN_BROKER_URL is not set: no Redis for live "
                                             "inbox updates", provider=self.provider)
                    self._redis = new_redis_client(settings, timeout_s=2.0)
            return self._engine, self._redis, self._key_prefix

    def send(self, message: OutboundMessage) -> SendResult:
        result = self.send_many([message])[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult | DeliveryError]:
        results: list[SendResult | DeliveryError | None] = [None] * len(messages)
        try:
            engine, client, prefix = self._deps()
        except DeliveryError as exc:
            return [exc for _ in messages]
        try:
            with engine.begin() as conn:
                slugs = {m.tenant for m in messages if m.tenant} - self._tenants.keys()
                if slugs:
                    self._tenants.update(find_tenant_ids(conn, slugs))
                rows: dict[int, dict[str, Any]] = {}
                for i, m in enumerate(messages):
                    problem = self._problem(m)
                    if problem:
                        results[i] = PermanentError(f"inbox: {problem}", code="inbox-invalid",
                                                    provider=self.provider)
                    elif m.delivery_id not in rows:
                        rows[m.delivery_id] = self._row(m)
                stored = {r.delivery_id: r for r in _INSERT.rows(conn, {
                    key: [row[key] for row in rows.values()]
                    for key in ("tids", "cids", "dids", "titles", "bodies", "ctas", "ms", "rids")
                })} if rows else {}
        except Exception as exc:  # noqa: BLE001 - the store is down: nothing was delivered
            err = TransientError(f"inbox store unavailable: {type(exc).__name__}",
                                 provider=self.provider)
            return [r if r is not None else err for r in results]

        announcements: dict[int, tuple[str, str]] = {}
        for i, m in enumerate(messages):
            if results[i] is not None:
                continue
            row = stored[m.delivery_id]
            results[i] = SendResult(self.provider, str(row.id), "delivered")
            if row.inserted:  # a resend of a stored item is not announced again
                announcements[row.id] = (inbox_channel_name(prefix, m.tenant, m.recipient),
                                         json.dumps(item_json(row)))
        self._announce(client, list(announcements.values()))
        return [r for r in results if r is not None]

    def _problem(self, m: OutboundMessage) -> str | None:
        if not m.recipient:
            return "no customer id (recipient)"
        if m.tenant not in self._tenants:
            return f"unknown tenant {m.tenant!r}"
        if not m.text:
            return "empty body"
        return None

    def _row(self, m: OutboundMessage) -> dict[str, Any]:
        meta = m.metadata or {}

        def opt(key: str, limit: int | None = None) -> str | None:
            value = meta.get(key)
            return str(value)[:limit] if value not in (None, "") else None

        return {"tids": self._tenants[m.tenant], "cids": m.recipient[:128],
                "dids": m.delivery_id, "titles": m.subject, "bodies": m.text,
                "ctas": self._cta(meta.get("cta_url")), "ms": opt("milestone", 32),
                "rids": opt("return_id", 64)}

    def _cta(self, url: Any) -> str | None:
        """The link a retailer's app opens: https only (or this service's own status page,
        whatever RSN_PUBLIC_BASE_URL's scheme); anything else is dropped, never stored."""
        if https_url(url) is not None:
            return str(url).strip()
        own = get_settings().public_base_url.rstrip("/") + "/"
        if isinstance(url, str) and url.startswith(own) and https_url(
                "https://" + url.split("://", 1)[-1]) is not None:
            return url
        if url not in (None, ""):
            log.warning("inbox: a call-to-action link that is not https was dropped")
        return None

    def _announce(self, client: redis.Redis, announcements: list[tuple[str, str]]) -> None:
        """Best effort: the item is stored; a client that misses the push sees it on reload."""
        if not announcements:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for channel_name, payload in announcements:
                pipe.publish(channel_name, payload)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("inbox: %d live updates not published (%s); items are stored",
                        len(announcements), type(exc).__name__)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
