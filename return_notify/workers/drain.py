"""Adaptive batching on the consumer side: a running task takes more waiting messages of
its own kind from its own queue, so batches form by themselves under load whatever the
producer does, and a lone message goes through at once with no added wait.

Producers (``publish``, ``POST /v1/events``, carrier webhooks, the stream listener) mostly
send one event per status change. Without this, each costs one ingest message and one
deliver message per channel, and the per-message overhead (Celery's trace, task events, a
transaction each) caps a 2-core worker near 150 events/s. With it, a task that starts while
others wait in Redis drains up to a cap of them with one atomic script and processes the
lot in one transaction.

Guarantees (kombu's Redis transport keeps the same structures; kombu is pinned):

* **Nothing is acknowledged before its effect is committed.** The script pops each message
  and records it in kombu's own ``unacked`` hash and ``unacked_index`` zset, exactly as
  kombu's consumer does, in one atomic step (no window in which a message exists nowhere).
  ``ack`` removes them only after the caller's commit (and its follow-up publishes).
* **A killed worker loses nothing.** A drained message still unacked is put back by
  kombu's ``restore_visible`` (and the sweeper's ``restore_unacked``) once older than the
  visibility timeout, as any message a dead worker held.
* **Failures give messages back at once.** ``restore`` pushes them to the front of their
  queue (the end consumers pop next) and forgets them in ``unacked``.
* **Only what the task can take**: messages of another task, or with an ETA (a retry's
  countdown), are put back where they were, untouched, for Celery's own consumer; the
  script examines a bounded number of messages per call.
* **Priorities hold**: the priority sub-lists are drained in kombu's order (0 first).

Flower still sees every message: with task events on, the task that drained messages sends
``task-received`` and ``task-succeeded`` events under each drained message's own task id
once they are done (``announce``), so Flower's counts and throughput stay per message. They
are also counted in ``rsn_drained_messages_total`` and in the task's result (``drained``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from return_notify.config.celery import transport_options
from return_notify.config.settings import Settings, get_settings
from return_notify.storage.redis import redis_client

log = logging.getLogger(__name__)

__all__ = ["Drained", "Drainer", "announce", "drainer", "reset_drainers"]

#: kombu's separator of a queue's priority sub-lists and its default priority steps
_PRIORITY_SEP = "\x06\x16"

_DRAIN = """
local want, task, limit, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local taken, skipped, seen = {}, {}, 0
for i = 3, #KEYS do
  while #taken < want * 2 and seen < limit do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    seen = seen + 1
    local ok, msg = pcall(cjson.decode, item)
    local headers = ok and type(msg) == 'table' and msg.headers
    local props = ok and type(msg) == 'table' and msg.properties
    if type(headers) == 'table' and type(props) == 'table' and headers.task == task
        and (headers.eta == nil or headers.eta == cjson.null)
        and type(props.delivery_tag) == 'string' then
      local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
      local ex = type(info.exchange) == 'string' and info.exchange or ''
      local rk = type(info.routing_key) == 'string' and info.routing_key or ''
      redis.call('ZADD', KEYS[1], now, props.delivery_tag)
      redis.call('HSET', KEYS[2], props.delivery_tag,
                 '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']')
      table.insert(taken, KEYS[i])
      table.insert(taken, item)
    else
      table.insert(skipped, KEYS[i])
      table.insert(skipped, item)
    end
  end
end
for j = #skipped - 1, 1, -2 do
  redis.call('RPUSH', skipped[j], skipped[j + 1])
end
return taken
"""

_RESTORE = """
for j = 1, #ARGV, 3 do
  redis.call('ZREM', KEYS[1], ARGV[j])
  redis.call('HDEL', KEYS[2], ARGV[j])
  redis.call('RPUSH', ARGV[j + 1], ARGV[j + 2])
end
return #ARGV / 3
"""


@dataclass(frozen=True)
class Drained:
    """One message taken from the queue: its tag, where it came from, its task arguments."""

    tag: str
    list_key: str
    raw: str
    args: list[Any]
    kwargs: dict[str, Any]
    task_id: str = ""
    argsrepr: str = ""


class Drainer:
    """Takes waiting messages of ``task`` from ``queue`` (all its priority sub-lists)."""

    def __init__(self, client: Any, queue: str, task: str, *, prefix: str = "",
                 priority_steps: list[int] | None = None) -> None:
        self.r = client
        self.queue = queue
        self.task = task
        steps = priority_steps or [0, 3, 6, 9]
        self.list_keys = [prefix + (queue if not p else f"{queue}{_PRIORITY_SEP}{p}")
                          for p in steps]
        self.unacked_index = prefix + "unacked_index"
        self.unacked = prefix + "unacked"
        self._drain = client.register_script(_DRAIN)
        self._restore = client.register_script(_RESTORE)

    def take(self, max_messages: int, examine: int | None = None) -> list[Drained]:
        """Up to ``max_messages`` waiting messages, recorded as unacked (one atomic call);
        at most ``examine`` messages are looked at (those skipped stay where they were)."""
        if max_messages <= 0:
            return []
        flat = self._drain(keys=[self.unacked_index, self.unacked, *self.list_keys],
                           args=[max_messages, self.task, examine or max_messages * 2 + 16,
                                 repr(time.time())])
        out: list[Drained] = []
        for i in range(0, len(flat), 2):
            key = _text(flat[i])
            raw = _text(flat[i + 1])
            try:
                out.append(_decode(key, raw))
            except (ValueError, KeyError, TypeError, IndexError):
                # taken (it is in unacked) but unreadable: give it back to Celery's consumer,
                # which records it as a failed task instead of us guessing
                log.warning("drained a message that is not a %s call; handing it back", self.task)
                self._restore(keys=[self.unacked_index, self.unacked],
                              args=[json.loads(raw)["properties"]["delivery_tag"], key, raw])
        return out

    def waiting(self) -> int:
        """Messages waiting in the queue (every priority sub-list), of any task."""
        pipe = self.r.pipeline(transaction=False)
        for key in self.list_keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())

    def ack(self, messages: list[Drained]) -> None:
        """Forget ``messages`` for good: call only after their effect is committed."""
        if not messages:
            return
        tags = [m.tag for m in messages]
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self.unacked_index, *tags)
        pipe.hdel(self.unacked, *tags)
        pipe.execute()

    def restore(self, messages: list[Drained]) -> None:
        """Put ``messages`` back at the front of their queues (they are consumed next)."""
        if not messages:
            return
        args: list[str] = []
        for m in reversed(messages):  # the first one ends up next in line, as before
            args += [m.tag, m.list_key, m.raw]
        self._restore(keys=[self.unacked_index, self.unacked], args=args)


def step_for(room: int, per_message: float, most: int) -> int:
    """Messages to take in one call for ``room`` more items (events, delivery ids) when
    a message has held ``per_message`` items on average so far: at least one (a message
    is never split, so a batch ends within one message of its cap) and at most ``most``.
    Counting messages as items overshot the cap by up to ``most`` messages: with the
    producer's 200-event messages an ingest cap of 1,000 events drained 6,600. The size is
    a guess from what was seen: a task whose own message is one event, in front of a
    producer's batches, takes ``most`` of them in its first call (a ramp of two, then six
    messages bounded that, but cost 1-3 ms at the median at 200 single publishes/s)."""
    return max(1, min(most, int(room // max(per_message, 1.0))))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(list_key: str, raw: str) -> Drained:
    payload = json.loads(raw)
    body = payload["body"]
    if payload.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    args, kwargs, _embed = json.loads(body)
    headers = payload.get("headers") or {}
    return Drained(tag=payload["properties"]["delivery_tag"], list_key=list_key, raw=raw,
                   args=list(args), kwargs=dict(kwargs or {}),
                   task_id=str(headers.get("id") or ""),
                   argsrepr=str(headers.get("argsrepr") or "")[:200])


def announce(task: Any, drained: list[Drained], runtime_s: float) -> None:
    """With task events on, tell monitors (Flower) that each drained message was received
    and succeeded, under its own task id, as if it had run as a task of its own. All of a
    batch's events go out as **one** message (Celery's grouped ``task.multi`` events, which
    monitors unpack), not two publishes per drained message."""
    if not drained or not task.app.conf.worker_send_task_events:
        return
    hostname = getattr(task.request, "hostname", None)
    share = runtime_s / (len(drained) + 1)
    now = time.time()
    try:
        with task.app.amqp.producer_pool.acquire(block=True) as producer:
            dispatcher = task.app.events.Dispatcher(
                producer.connection, hostname, True, producer.channel,
                buffer_while_offline=False, buffer_group=("task",),
                buffer_limit=2 * len(drained) + 2)
            try:
                for m in drained:
                    if not m.task_id:
                        continue
                    dispatcher.send("task-received", uuid=m.task_id, name=task.name,
                                    args=m.argsrepr, kwargs="{}", retries=0, eta=None,
                                    root_id=m.task_id, parent_id=None, timestamp=now)
                    dispatcher.send("task-succeeded", uuid=m.task_id, result="drained",
                                    runtime=share, timestamp=now)
                dispatcher.flush()
            finally:
                dispatcher.close()
    except Exception:  # noqa: BLE001 - monitoring never fails a batch
        log.warning("could not announce %d drained messages to monitors", len(drained),
                    exc_info=True)


# ------------------------------------------------------------------ per process -----------

_drainers: dict[tuple[int, str, str], Drainer] = {}


def drainer(queue: str, task: str, settings: Settings | None = None) -> Drainer:
    """This process's drainer of ``queue`` (built on first use: a forked pool child builds
    its own Redis connection)."""
    settings = settings or get_settings()
    key = (os.getpid(), queue, task)
    found = _drainers.get(key)
    if found is None:
        opts = transport_options(settings)
        found = Drainer(redis_client(settings, timeout_s=10.0), queue, task,
                        prefix=settings.redis_key_prefix,
                        priority_steps=list(opts.get("priority_steps") or [0, 3, 6, 9]))
        _drainers[key] = found
    return found


def reset_drainers() -> None:
    """Drop this process's drainers (tests that change the broker; pool children)."""
    for (pid, _queue, _task), d in _drainers.items():
        if pid != os.getpid():
            continue  # a forked child never closes its parent's sockets
        try:
            d.r.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
    _drainers.clear()
