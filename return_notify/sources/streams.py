"""Redis Stream listener: producers in any language ``XADD`` events; this feeds the ingest task.

Stream ``{RSN_REDIS_KEY_PREFIX}events:stream``; each entry has a field ``event`` (one JSON
event) or ``events`` (a JSON array). The listener reads with ``XREADGROUP`` in a consumer
group, validates, publishes to ``return_notify.ingest`` in batches and ``XACK``s only once
the publish succeeded, so a crash re-delivers instead of losing. Entries a dead consumer
held longer than ``RSN_STREAM_CLAIM_IDLE_S`` are taken over with ``XAUTOCLAIM``.

A bad entry never blocks the stream: an event that breaks the contract is still handed to
ingest, which records it in ``rejected_events`` with the reason; an entry that is not an
event at all (no ``event``/``events`` field, not JSON, too big) or that was delivered more
than ``RSN_STREAM_MAX_DELIVERIES`` times goes to the dead-letter stream ``…:dead`` with the
reason, and is acknowledged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from return_notify.config.settings import Settings
from return_notify.errors import EventValidationError, PublishError
from return_notify.events import parse_event

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]
Publisher = Callable[[list[list[dict[str, Any]]]], int]
MAX_EVENTS_PER_ENTRY = 1000
_LOG_EVERY_S = 60.0
_TRIM_EVERY_S = 5.0
_FORGET_MS = 3_600_000


def stream_keys(settings: Settings) -> tuple[str, str]:
    """(stream, dead-letter stream), after the deployment's key prefix."""
    key = f"{settings.redis_key_prefix}{settings.stream_key}"
    return key, f"{key}:dead"


@dataclass
class ListenerStats:
    entries: int = 0
    events: int = 0
    invalid: int = 0
    published: int = 0
    dead: int = 0
    claimed: int = 0
    publish_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "started"}


class Poison(ValueError):
    """An entry that is not an event at all; it goes to the dead letter."""


def decode_entry(fields: dict[str, str], max_bytes: int) -> list[Any]:
    """The raw events of one entry, or ``Poison`` saying why there are none."""
    size = sum(len(k) + len(v) for k, v in fields.items())
    if size > max_bytes:
        raise Poison(f"entry is {size} bytes, over RSN_STREAM_MAX_ENTRY_BYTES={max_bytes}")
    if "event" in fields:
        raw, many = fields["event"], False
    elif "events" in fields:
        raw, many = fields["events"], True
    else:
        raise Poison(f"no 'event' or 'events' field (got {sorted(fields)[:5]})")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Poison(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise Poison("JSON nested too deeply to decode") from None
    if not many:
        if not isinstance(value, dict):
            raise Poison("'event' must hold one JSON object")
        return [value]
    if not isinstance(value, list) or not value:
        raise Poison("'events' must hold a non-empty JSON array")
    if len(value) > MAX_EVENTS_PER_ENTRY:
        raise Poison(f"'events' holds {len(value)} events; at most {MAX_EVENTS_PER_ENTRY}")
    return value


class StreamListener:
    """One consumer of the group; ``run(stop)`` until ``stop`` is set (warm: the batch in
    hand is published and acknowledged first)."""

    def __init__(self, client: redis.Redis, settings: Settings, consumer: str,
                 publish: Publisher, *, batch: int | None = None) -> None:
        # redis-py types every command as sync-or-async; this client is sync.
        self.r: Any = client
        self.settings = settings
        self.cfg = settings
        self.consumer = consumer
        self.publish = publish
        self.batch = batch or settings.stream_batch
        self.key, self.dead_key = stream_keys(settings)
        self.group = settings.stream_group
        self.stats = ListenerStats()
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._last_log = time.monotonic()

    # -------------------------------------------------------------- setup -------------
    def ensure_group(self) -> None:
        """Create the group reading from the start of the stream (entries XADDed before
        the first listener ran are not lost); an existing group is left as it is."""
        try:
            self.r.xgroup_create(self.key, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.key)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -------------------------------------------------------------- loop --------------
    def run(self, stop: threading.Event) -> ListenerStats:
        self.ensure_group()
        log.info("listening on %s as %s/%s (batch %d)", self.key, self.group, self.consumer,
                 self.batch)
        self._own_pending(stop)
        backoff = 0.5
        while not stop.is_set():
            try:
                self.step(stop)
                backoff = 0.5
            except redis.RedisError as exc:
                log.warning("redis error (%s); retrying in %.1f s", type(exc).__name__, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            self._maybe_log()
        try:
            self._trim(force=True)
        except redis.RedisError:
            pass
        log.info("listener %s stopped: %s", self.consumer, self.stats.as_dict())
        return self.stats

    def step(self, stop: threading.Event) -> int:
        """One round: claim from dead consumers when due, then read new entries."""
        done = 0
        if time.monotonic() >= self._next_claim:
            done += self.claim(stop)
            self._next_claim = time.monotonic() + self.cfg.stream_claim_interval_s
        reply = self.r.xreadgroup(self.group, self.consumer, {self.key: ">"},
                                  count=self.batch, block=self.cfg.stream_block_ms)
        entries = _entries(reply)
        if entries:
            done += self.process(entries, stop)
        return done

    def _own_pending(self, stop: threading.Event) -> None:
        """Entries this consumer name read but never acknowledged (a restart after a crash)."""
        while not stop.is_set():
            entries = _entries(self.r.xreadgroup(self.group, self.consumer, {self.key: "0"},
                                                 count=self.batch))
            live = [e for e in entries if e[1]]
            self._ack_deleted(entries)
            if not live:
                return
            self.process(self._drop_poison(live), stop)

    def claim(self, stop: threading.Event) -> int:
        """``XAUTOCLAIM`` entries idle longer than the claim threshold, then process them."""
        idle_ms = int(self.cfg.stream_claim_idle_s * 1000)
        cursor, total = "0-0", 0
        while not stop.is_set():
            reply = self.r.xautoclaim(self.key, self.group, self.consumer, idle_ms,
                                      start_id=cursor, count=self.batch)
            cursor = _text(reply[0])
            entries = [(_text(i), _fields(f)) for i, f in reply[1]]
            self._ack_deleted(entries)
            live = [e for e in entries if e[1]]
            if live:
                self.stats.claimed += len(live)
                log.info("claimed %d entries idle > %.0f s from dead consumers", len(live),
                         self.cfg.stream_claim_idle_s)
                total += self.process(self._drop_poison(live), stop)
            if cursor == "0-0":
                break
        self._forget_idle_consumers()
        return total

    def _forget_idle_consumers(self) -> None:
        """Delete consumers gone for an hour with nothing pending (names of dead processes)."""
        for c in self.r.xinfo_consumers(self.key, self.group):
            name = _text(c["name"])
            if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) > _FORGET_MS:
                self.r.xgroup_delconsumer(self.key, self.group, name)
                log.info("forgot consumer %s (idle, nothing pending)", name)

    # -------------------------------------------------------------- processing --------
    def process(self, entries: list[Entry], stop: threading.Event) -> int:
        """Publish the events of ``entries`` in batches, then acknowledge them all."""
        if not entries:
            return 0
        self.stats.entries += len(entries)
        payloads: list[dict[str, Any]] = []
        ack: list[str] = []
        for entry_id, fields in entries:
            try:
                raw_events = decode_entry(fields, self.cfg.stream_max_entry_bytes)
            except Poison as exc:
                self.dead_letter(entry_id, fields, str(exc))
                continue
            ack.append(entry_id)
            for raw in raw_events:
                payloads.append(self._validated(raw))
        if payloads and not self._publish(payloads, stop):
            return 0  # stopping with the broker down: left pending, claimed or re-read later
        if ack:
            self.r.xack(self.key, self.group, *ack)
        self.stats.published += len(payloads)
        self._trim()
        return len(payloads)

    def _validated(self, raw: Any) -> Any:
        self.stats.events += 1
        try:
            return parse_event(raw).model_dump(mode="json", exclude_none=True)
        except EventValidationError:
            self.stats.invalid += 1  # ingest records it in rejected_events, with the reason
            return raw

    def _publish(self, payloads: list[dict[str, Any]], stop: threading.Event) -> bool:
        size = self.settings.ingest_batch_size
        batches = [payloads[i:i + size] for i in range(0, len(payloads), size)]
        backoff = 0.5
        while True:
            try:
                self.publish(batches)
                return True
            except PublishError as exc:
                self.stats.publish_failures += 1
                log.error("publish failed (%s); %d events stay pending, retry in %.1f s",
                          exc, len(payloads), backoff)
                if stop.wait(backoff):
                    return False
                backoff = min(backoff * 2, 30.0)

    def dead_letter(self, entry_id: str, fields: dict[str, str], reason: str) -> None:
        """Move an entry to the dead-letter stream with the reason, and acknowledge it."""
        record = {"original_id": entry_id, "reason": reason[:1000], "consumer": self.consumer,
                  "failed_at": str(int(time.time()))}
        for k, v in fields.items():
            record[f"field:{k}"[:200]] = v[: self.cfg.stream_max_entry_bytes]
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.dead_key, record, maxlen=self.cfg.stream_dead_maxlen,  # type: ignore[arg-type]
                  approximate=True)
        pipe.xack(self.key, self.group, entry_id)
        pipe.execute()
        self.stats.dead += 1
        log.warning("stream entry %s dead-lettered: %s", entry_id, reason)

    def _drop_poison(self, entries: list[Entry]) -> list[Entry]:
        """Dead-letter entries delivered more than ``max_deliveries`` times; keep the rest."""
        ids = [e[0] for e in entries]
        pending = self.r.xpending_range(self.key, self.group, min=min(ids, key=_id_key),
                                        max=max(ids, key=_id_key), count=len(ids) * 2 + 10,
                                        consumername=self.consumer)
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        keep: list[Entry] = []
        for entry_id, fields in entries:
            times = counts.get(entry_id, 1)
            if times > self.cfg.stream_max_deliveries:
                self.dead_letter(entry_id, fields, f"delivered {times} times without being "
                                 "acknowledged (a consumer crashes on it)")
            else:
                keep.append((entry_id, fields))
        return keep

    def _ack_deleted(self, entries: Iterable[Entry]) -> None:
        gone = [i for i, f in entries if not f]  # XDEL'd or trimmed while pending
        if gone:
            self.r.xack(self.key, self.group, *gone)

    def _trim(self, force: bool = False) -> None:
        """Drop entries every group has read and acknowledged (``XTRIM MINID``)."""
        if not self.cfg.stream_trim or (time.monotonic() < self._next_trim and not force):
            return
        self._next_trim = time.monotonic() + _TRIM_EVERY_S
        floor: str | None = None
        for group in self.r.xinfo_groups(self.key):
            name = _text(group["name"])
            summary = self.r.xpending(self.key, name)
            candidates = [_text(group["last-delivered-id"])]
            if summary and summary.get("pending"):
                candidates.append(_text(summary["min"]))
            low = min(candidates, key=_id_key)
            floor = low if floor is None else min(floor, low, key=_id_key)
        if floor and floor != "0-0":
            self.r.xtrim(self.key, minid=floor, approximate=True, limit=0)  # 0: all whole nodes

    def _maybe_log(self) -> None:
        if time.monotonic() - self._last_log >= _LOG_EVERY_S:
            self._last_log = time.monotonic()
            log.info("listener %s: %s", self.consumer, self.stats.as_dict())


def _text(value: Any) -> str:
    # a producer may XADD any bytes: what is not UTF-8 becomes U+FFFD, never a crash
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    return {_text(k): _text(v) for k, v in dict(raw).items()}


def _entries(reply: Any) -> list[Entry]:
    out: list[Entry] = []
    for _stream, items in reply or []:
        out.extend((_text(i), _fields(f)) for i, f in items)
    return out


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
