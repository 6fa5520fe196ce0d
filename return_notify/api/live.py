"""Live inbox streams of one API process over ONE Redis pub/sub connection, with caps.

A stream used to open its own Redis connection: 200 streams of one customer were 200
clients on the Redis that Celery needs. Here a hub thread per process holds a single
``PubSub`` and subscribes to a customer's channel while at least one of their streams is
open; each stream gets the channel's messages through an asyncio queue of its own event
loop. Streams are capped:

* ``RSN_INBOX_STREAM_MAX_PER_CUSTOMER`` per customer (every token, tab and device of one
  customer together): one more is :class:`TooManyStreams` (the API answers 429);
* ``RSN_INBOX_STREAM_MAX_PER_PROCESS`` per process: one more is :class:`HubFull` (503).

When Redis drops, every open stream ends (the browser's ``EventSource`` reconnects and
catches up from ``Last-Event-ID``) and the hub connects again on the next subscription.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import redis

from return_notify.config.settings import Settings, get_settings
from return_notify.storage.redis import redis_client

__all__ = ["END", "HubFull", "LiveHub", "Subscription", "TooManyStreams", "get_hub"]

log = logging.getLogger(__name__)

END = object()
"""Put on a stream's queue when the hub lost Redis: the stream ends."""
_POLL_S = 0.05
_SUBSCRIBE_TIMEOUT_S = 3.0


class TooManyStreams(RuntimeError):
    """This customer already has the most streams allowed."""


class HubFull(RuntimeError):
    """This process already serves the most streams allowed."""


class Subscription:
    """One open stream: its messages arrive on ``queue`` (``END`` when the hub lost Redis)."""

    def __init__(self, hub: LiveHub, channel: str, owner: Any,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.hub, self.channel, self.owner, self.loop = hub, channel, owner, loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        self.closed = False

    def deliver(self, data: Any) -> None:
        def put() -> None:
            try:
                self.queue.put_nowait(data)
            except asyncio.QueueFull:  # a client that does not read: drop, it will catch up
                pass

        try:
            self.loop.call_soon_threadsafe(put)
        except RuntimeError:  # the stream's loop is gone
            pass

    async def get(self, timeout_s: float) -> Any:
        """The next message, or None after ``timeout_s``."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.release(self)


class LiveHub:
    """The process's pub/sub connection and the streams listening on it."""

    def __init__(self, settings: Settings,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self._settings = settings
        self._factory = client_factory or (lambda: redis_client(settings, timeout_s=5.0))
        self._lock = threading.Lock()
        self._channels: dict[str, set[Subscription]] = {}
        self._per_owner: dict[Any, int] = {}
        self._commands: queue.Queue[tuple[str, str, Future[None] | None]] = queue.Queue()
        self._pending: dict[str, list[Future[None]]] = {}  # hub thread only
        self._confirmed: set[str] = set()  # hub thread only
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._pubsub: Any = None

    # -- counts (for tests and metrics) ---------------------------------------------------
    def open_streams(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._channels.values())

    # -- streams --------------------------------------------------------------------------
    async def subscribe(self, channel: str, owner: Any) -> Subscription:
        """A new stream on ``channel`` for ``owner`` (the customer); raises
        :class:`TooManyStreams`, :class:`HubFull` or ``redis.RedisError``."""
        per_owner = self._settings.inbox_stream_max_per_customer
        per_process = self._settings.inbox_stream_max_per_process
        sub = Subscription(self, channel, owner, asyncio.get_running_loop())
        with self._lock:
            if self._per_owner.get(owner, 0) >= per_owner:
                raise TooManyStreams(f"at most {per_owner} live streams per customer")
            if sum(len(s) for s in self._channels.values()) >= per_process:
                raise HubFull(f"this server holds its maximum of {per_process} live streams")
            self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
            listeners = self._channels.setdefault(channel, set())
            first = not listeners
            listeners.add(sub)
            done: Future[None] = Future()
            # the first stream subscribes; the others wait for the same confirmation
            self._commands.put(("subscribe" if first else "join", channel, done))
            self._ensure_thread()
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), _SUBSCRIBE_TIMEOUT_S)
        except BaseException:
            sub.close()
            raise
        return sub

    def release(self, sub: Subscription) -> None:
        with self._lock:
            listeners = self._channels.get(sub.channel)
            if listeners is not None and sub in listeners:
                listeners.discard(sub)
                left = self._per_owner.get(sub.owner, 1) - 1
                if left > 0:
                    self._per_owner[sub.owner] = left
                else:
                    self._per_owner.pop(sub.owner, None)
                if not listeners:
                    del self._channels[sub.channel]
                    self._commands.put(("unsubscribe", sub.channel, None))

    # -- the hub thread -------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="rsn-live-hub", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except redis.RedisError as exc:
                self._lost(exc)
            except Exception:  # noqa: BLE001 - the hub must outlive any one message
                log.exception("live inbox hub: unexpected error")
                self._lost(None)

    def _connect(self) -> Any:
        if self._pubsub is None:
            self._client = self._factory()
            self._pubsub = self._client.pubsub()
        return self._pubsub

    def _step(self) -> None:
        try:
            command = self._commands.get(timeout=_POLL_S if self._pubsub is not None else 1.0)
        except queue.Empty:
            command = None
        while command is not None:
            self._apply(*command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                command = None
        if self._pubsub is not None and self._pubsub.subscribed:
            message = self._pubsub.get_message(timeout=_POLL_S)
            while message is not None:
                self._dispatch(message)
                message = self._pubsub.get_message(timeout=0)

    def _apply(self, kind: str, channel: str, done: Future[None] | None) -> None:
        if kind == "join":
            if done is None or done.done():
                return
            if channel in self._confirmed:
                done.set_result(None)
            elif channel in self._pending:
                self._pending[channel].append(done)
            else:  # its subscription failed or ended meanwhile
                done.set_exception(redis.ConnectionError("live updates are reconnecting"))
            return
        if kind == "subscribe":
            with self._lock:
                wanted = channel in self._channels
            if not wanted:
                if done is not None and not done.done():
                    done.set_result(None)
                return
            try:
                self._connect().subscribe(channel)
            except BaseException as exc:
                if done is not None and not done.done():
                    done.set_exception(exc)
                raise
            if done is not None:
                self._pending.setdefault(channel, []).append(done)
        elif self._pubsub is not None:
            with self._lock:
                wanted = channel in self._channels
            if not wanted:
                self._confirmed.discard(channel)
                self._pubsub.unsubscribe(channel)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind == "subscribe":
            self._confirmed.add(name)
            for done in self._pending.pop(name, []):
                if not done.done():
                    done.set_result(None)
            return
        if kind != "message":
            return
        with self._lock:
            listeners = list(self._channels.get(name, ()))
        for sub in listeners:
            sub.deliver(message.get("data"))

    def _lost(self, exc: BaseException | None) -> None:
        """Redis failed: end every stream and drop the connection (the next subscription
        connects again)."""
        if exc is not None:
            log.warning("live inbox hub: Redis error (%s); ending %d stream(s)",
                        type(exc).__name__, self.open_streams())
        with self._lock:
            subs = [s for group in self._channels.values() for s in group]
            self._channels.clear()
            self._per_owner.clear()
        for done in (d for group in self._pending.values() for d in group):
            if not done.done():
                done.set_exception(exc or redis.ConnectionError("live hub failed"))
        self._pending.clear()
        self._confirmed.clear()
        for sub in subs:
            sub.closed = True
            sub.deliver(END)
        for closer in (getattr(self._pubsub, "close", None), getattr(self._client, "close", None)):
            try:
                if closer is not None:
                    closer()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._pubsub = self._client = None
        self._drain_commands()

    def _drain_commands(self) -> None:
        while True:
            try:
                _, _, done = self._commands.get_nowait()
            except queue.Empty:
                return
            if done is not None and not done.done():
                done.set_exception(redis.ConnectionError("live hub reconnecting"))


_hubs: dict[tuple[int, str | None, str], LiveHub] = {}
_hubs_lock = threading.Lock()


def get_hub() -> LiveHub:
    """This process's hub for the current broker URL and key prefix."""
    s = get_settings()
    key = (os.getpid(), s.broker_url, s.redis_key_prefix)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None or hub._settings is not s:
            hub = _hubs[key] = LiveHub(s) if hub is None else _rebind(hub, s)
        return hub


def _rebind(hub: LiveHub, settings: Settings) -> LiveHub:
    hub._settings = settings  # new caps apply to the next stream; the connection stays
    return hub
