"""The channel interface: ``send(message) -> SendResult`` or a typed ``DeliveryError``.

A channel never sleeps to throttle, never retries and never touches the pipeline's
database: the deliver task owns retries, rate limits and the record of every attempt.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from return_notify.errors import DeliveryError, TransientError


@dataclass(frozen=True)
class OutboundMessage:
    """Everything a provider needs for one send; built by the deliver task."""

    delivery_id: int
    channel: str  # email | sms | inapp
    recipient: str  # email address, E.164 number, or customer id for in-app
    text: str
    subject: str | None = None  # email subject / in-app title
    html: str | None = None
    attempt: int = 1
    tenant: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # ids only, never PII


@dataclass(frozen=True)
class SendResult:
    """A provider accepted the message; ``provider_message_id`` tracks it from then on."""

    provider: str
    provider_message_id: str
    status: str = "sent"  # what the provider said: queued / accepted / sent


@dataclass(frozen=True)
class Sent:
    """One provider call's outcome as it comes back: the result (or typed error), how long
    the call took and when it finished."""

    message: OutboundMessage
    result: SendResult | DeliveryError
    call_ms: float
    done_at: datetime


#: ``iter_send`` yields this when it may not start another call before the caller records
#: what it holds (see ``room``)
RECORD_NOW = None


class Channel(ABC):
    """One provider account for one channel."""

    #: provider name recorded on deliveries and attempts ("sandbox", "sendgrid", ...)
    provider: str = "base"
    channel: str = ""
    _max_parallel: int = 1
    _pool: ThreadPoolExecutor | None = None
    _pool_lock = threading.Lock()

    @property
    def max_parallel(self) -> int:
        """Provider calls in flight at once in ``send_many``: network providers wait on I/O,
        so a batch is sent by a thread pool (set from ``RSN_PROVIDER_CONCURRENCY``)."""
        return self._max_parallel

    @max_parallel.setter
    def max_parallel(self, value: int) -> None:
        self._max_parallel = max(1, int(value))
        self.resize_connections(self._max_parallel)

    def resize_connections(self, size: int) -> None:
        """Keep ``size`` keep-alive connections to the provider (HTTP providers override)."""

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message or raise ``TransientError`` / ``RateLimitedError`` /
        ``PermanentError``."""

    def send_many(
        self, messages: Sequence[OutboundMessage]
    ) -> list[SendResult | DeliveryError]:
        """Send several messages; one result or error per message, in order.

        Providers with a batch API override this; the default sends one by one and turns
        unexpected exceptions into ``TransientError`` so one bad message never sinks a batch.
        """
        return [result for result, _ in self.send_many_timed(messages)]

    def send_many_timed(
        self, messages: Sequence[OutboundMessage]
    ) -> list[tuple[SendResult | DeliveryError, float]]:
        """``send_many`` with how long each message's provider call took, in ms.

        Calls made one by one (in parallel or not) are timed each; a provider that sends a
        whole batch in one call (``send_many`` overridden) gets the batch's time divided by
        its messages.
        """
        if not messages:
            return []
        if type(self).send_many is not Channel.send_many:
            t0 = time.perf_counter()
            results = self.send_many(messages)
            ms = (time.perf_counter() - t0) * 1000.0 / len(messages)
            return [(result, ms) for result in results]
        if self.max_parallel > 1 and len(messages) > 1:
            return list(self._executor().map(self._send_one_timed, messages))
        return [self._send_one_timed(m) for m in messages]

    #: messages per ``send_many`` call of a provider with a batch API, in ``iter_send``
    batch_chunk: int = 64

    def unrecorded_window(self) -> int:
        """How many calls may be outstanding (in flight, or answered and not yet recorded):
        ``max_parallel`` for one-by-one providers, ``batch_chunk`` for a batch API."""
        if type(self).send_many is not Channel.send_many:
            return max(1, self.batch_chunk)
        return max(1, self.max_parallel)

    def iter_send(self, messages: Sequence[OutboundMessage],
                  room: Callable[[], int] | None = None) -> Iterator[Sent | None]:
        """Send ``messages``, yielding each outcome as soon as it is known, so the caller can
        record results while others are still in flight.

        ``room()`` is how many calls may be outstanding (in flight, or answered and not yet
        recorded by the caller); no call starts beyond it, so a worker killed at any instant
        has at most that many sends that went out without a record. When nothing is in
        flight and there is no room, ``RECORD_NOW`` (None) is yielded: record, then go on.
        One-by-one providers run up to ``max_parallel`` calls at once; a provider with a
        batch API (``send_many`` overridden) is called ``batch_chunk`` messages at a time.
        """
        pending = deque(messages)
        if type(self).send_many is not Channel.send_many:
            while pending:
                size = self.batch_chunk if room is None else min(self.batch_chunk, room())
                if size <= 0:
                    yield RECORD_NOW
                    continue
                chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                t0 = time.perf_counter()
                results = self.send_many(chunk)
                ms = (time.perf_counter() - t0) * 1000.0 / len(chunk)
                done_at = datetime.now(UTC)
                for message, result in zip(chunk, results, strict=True):
                    yield Sent(message, result, ms, done_at)
            return
        in_flight: dict[Future[tuple[SendResult | DeliveryError, float]], OutboundMessage] = {}
        serial = self.max_parallel <= 1
        try:
            while pending or in_flight:
                free = self.max_parallel - len(in_flight)
                if room is not None:
                    free = min(free, room() - len(in_flight))
                if pending and free > 0 and serial:
                    message = pending.popleft()
                    result, ms = self._send_one_timed(message)
                    yield Sent(message, result, ms, datetime.now(UTC))
                    continue
                while pending and free > 0:
                    message = pending.popleft()
                    in_flight[self._executor().submit(self._send_one_timed, message)] = message
                    free -= 1
                if not in_flight:
                    yield RECORD_NOW
                    continue
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    message = in_flight.pop(future)
                    result, ms = future.result()
                    yield Sent(message, result, ms, datetime.now(UTC))
        finally:
            for future in in_flight:  # abandoned (time limit, shutdown): let them finish
                future.cancel()

    def _send_one_timed(self, message: OutboundMessage) -> tuple[SendResult | DeliveryError, float]:
        t0 = time.perf_counter()
        result = self._send_one(message)
        return result, (time.perf_counter() - t0) * 1000.0

    def _send_one(self, message: OutboundMessage) -> SendResult | DeliveryError:
        try:
            return self.send(message)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - classified at the boundary
            return TransientError(f"{type(exc).__name__}: {exc}", provider=self.provider)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_parallel,
                                                thread_name_prefix=f"send-{self.provider}")
            return self._pool

    def close(self) -> None:
        """Release connections; called when a worker process shuts down."""
        self.shutdown_pool()

    def shutdown_pool(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
