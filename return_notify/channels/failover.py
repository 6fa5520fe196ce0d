"""Provider failover: try channels in order, moving on only when one fails transiently.

``FailoverChannel([sendgrid, smtp]).send(m)`` returns the first success (its
``SendResult.provider`` names who sent it). A ``PermanentError`` stops at once: the
address or content is bad, and another provider would only send a bad message or be
refused too. When every provider fails transiently, the last error is raised (a
``RateLimitedError`` keeps its ``retry_after_s``) and the pipeline retries later.

A small circuit breaker keeps a dead primary from costing a full timeout per message:
after ``trip_after`` consecutive transient failures a provider is skipped for
``cooldown_s`` seconds, then tried again. When every provider is tripped they are all
tried anyway, in order. Nothing sleeps and nothing is retried here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)


class FailoverChannel(Channel):
    """Several providers of one channel, in order of preference."""

    def __init__(
        self,
        channels: Sequence[Channel],
        trip_after: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not channels:
            raise ValueError("FailoverChannel needs at least one channel")
        self.channels = list(channels)
        self.channel = self.channels[0].channel
        self.provider = "failover:" + ",".join(c.provider for c in self.channels)
        self._trip_after = trip_after
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = [0] * len(self.channels)
        self._open_until = [0.0] * len(self.channels)

    def _order(self) -> list[int]:
        now = self._clock()
        with self._lock:
            closed = [i for i in range(len(self.channels)) if self._open_until[i] <= now]
        return closed or list(range(len(self.channels)))

    def _outcome(self, index: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures[index] = 0
                self._open_until[index] = 0.0
                return
            self._failures[index] += 1
            if self._failures[index] >= self._trip_after:
                self._open_until[index] = self._clock() + self._cooldown_s
                logger.warning("failover: %s skipped for %.0f s after %d transient failures",
                               self.channels[index].provider, self._cooldown_s, self._failures[index])

    def send(self, message: OutboundMessage) -> SendResult:
        last: TransientError | None = None
        for index in self._order():
            channel = self.channels[index]
            try:
                result = channel.send(message)
            except PermanentError:
                self._outcome(index, ok=True)  # the provider answered; it is up
                raise
            except TransientError as exc:
                last = exc
            except Exception as exc:  # noqa: BLE001 - a provider bug must not stop failover
                last = TransientError(f"{type(exc).__name__}: {exc}", provider=channel.provider)
            else:
                self._outcome(index, ok=True)
                return result
            self._outcome(index, ok=False)
            logger.info("delivery %s: %s failed transiently (%s), trying the next provider",
                        message.delivery_id, channel.provider, last.code)
        raise last or TransientError("no provider available", provider=self.provider)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
