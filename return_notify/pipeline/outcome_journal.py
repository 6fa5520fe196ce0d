"""Outcomes PostgreSQL could not take in time, parked in Redis until it can.

A deliver batch records what its provider calls did while it sends (``deliver_record``).
When the database is unreachable, a write-back is retried until the batch's lease is about
to end; past that point the sends have happened but nobody may hold the rows any longer,
and an outcome that is dropped becomes a second send once the lease ends. So the
write-back is parked here instead (one JSON entry per write-back, in a Redis list) and
applied by the next claim or sweep before any row is claimed again: the rows are then
``sent`` and nothing is resent. Applying an entry is the same fenced write-back (only rows
still holding that claim token change), so an entry applied late, twice, or after another
claim changes nothing it should not.

The Redis key is ``{RSN_REDIS_KEY_PREFIX}outcomes:parked``. If Redis is unreachable too,
nothing can be parked: the rows are sent again after the lease, as before.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError

from return_notify.config.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Parked", "apply_parked", "park"]

#: list fields of the write-back that hold times
_TIME_LISTS = ("next_ats", "sent_ats")
_clients: dict[tuple[int, str, str], Any] = {}


def _key(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}outcomes:parked"


def _client(settings: Settings) -> Any | None:
    if not settings.broker_url:
        return None
    k = (os.getpid(), settings.broker_url, settings.redis_key_prefix)
    if k not in _clients:
        from return_notify.storage.redis import redis_client

        _clients[k] = redis_client(settings, timeout_s=5.0)
    return _clients[k]


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def _dt(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


class Parked:
    """One write-back: the fenced UPDATE's parameters, the attempt rows, opt-outs and
    SMS-to-email fallbacks (what ``Recorder.flush`` writes in one transaction)."""

    def __init__(self, params: dict[str, Any], attempts: list[dict[str, Any]],
                 opted_out: list[tuple[int, str]], fallback: list[int]) -> None:
        self.params, self.attempts = params, attempts
        self.opted_out, self.fallback = opted_out, fallback

    def dumps(self) -> str:
        params = {k: ([_iso(x) for x in v] if k in _TIME_LISTS else v)
                  for k, v in self.params.items()}
        attempts = [{**a, "started_at": _iso(a.get("started_at"))} for a in self.attempts]
        return json.dumps({"v": 1, "params": params, "attempts": attempts,
                           "opted_out": self.opted_out, "fallback": self.fallback})

    @classmethod
    def loads(cls, raw: str | bytes) -> Parked:
        d = json.loads(raw)
        params = {k: ([_dt(x) for x in v] if k in _TIME_LISTS else v)
                  for k, v in d["params"].items()}
        attempts = [{**a, "started_at": _dt(a.get("started_at"))} for a in d["attempts"]]
        return cls(params, attempts, [(int(t), str(r)) for t, r in d["opted_out"]],
                   [int(i) for i in d["fallback"]])


def park(settings: Settings, entry: Parked) -> bool:
    """Keep ``entry`` in Redis; False when Redis cannot take it either."""
    client = _client(settings)
    if client is None:
        return False
    try:
        client.rpush(_key(settings), entry.dumps())
    except Exception:  # noqa: BLE001 - any Redis failure: the caller falls back to the lease
        log.exception("parking %d delivery outcomes in Redis failed",
                      len(entry.params.get("ids", [])))
        return False
    log.warning("database unreachable past the lease: %d delivery outcomes parked in Redis "
                "until it is back", len(entry.params.get("ids", [])))
    return True


def apply_parked(session_factory: Callable[[], Any], settings: Settings,
                 write: Callable[[Any, Parked], list[int]], limit: int = 1000) -> int:
    """Write parked outcomes (oldest first) with ``write(session, entry)``; how many rows.

    One Redis read when nothing is parked. An entry whose write fails with the database
    still unreachable goes back to the head of the list and the error propagates.
    """
    client = _client(settings)
    if client is None:
        return 0
    key = _key(settings)
    if not client.llen(key):
        return 0
    rows = 0
    for _ in range(limit):
        raw = client.lpop(key)
        if raw is None:
            break
        try:
            entry = Parked.loads(raw)
        except (ValueError, KeyError, TypeError):
            log.error("dropped an unreadable parked outcome entry (%d bytes)", len(raw))
            continue
        try:
            with session_factory() as session:
                write(session, entry)
        except OperationalError:
            client.lpush(key, raw)
            raise
        rows += len(entry.params.get("ids", []))
    if rows:
        log.warning("wrote %d delivery outcomes parked while the database was unreachable", rows)
    return rows
