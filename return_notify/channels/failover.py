"""Provider failover: try channels in order, moving on only when one fails transiently.

``FailoverChannel([sendgrid, smtp]).send(m)`` returns the first success (its
``SendResult.provider`` names who sent it). A ``PermanentError`` stops at once: the
address or content is bad, and another provider would only send a bad message or be
refused too. When every provider that was called failed transiently, the last error is
raised (a ``RateLimitedError`` keeps its ``retry_after_s``) and the pipeline retries later.

Pausing a failing provider is its circuit breaker's job (``channels.breaker``: the
registry puts one in front of every network provider, here and when it is alone). A
paused provider raises ``ProviderPausedError`` without being called, and the chain moves
on to the next one at no cost. When **every** provider is paused, nothing is called: the
``ProviderPausedError`` with the shortest wait is raised, and the pipeline parks the
delivery until then without spending an attempt. Nothing sleeps and nothing is retried here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.breaker import ProviderPausedError, paused_s
from return_notify.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)


class FailoverChannel(Channel):
    """Several providers of one channel, in order of preference."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        if not channels:
            raise ValueError("FailoverChannel needs at least one channel")
        self.channels = list(channels)
        self.channel = self.channels[0].channel
        self.provider = "failover:" + ",".join(c.provider for c in self.channels)

    def send(self, message: OutboundMessage) -> SendResult:
        last: TransientError | None = None
        paused: list[ProviderPausedError] = []
        for channel in self.channels:
            try:
                return channel.send(message)
            except ProviderPausedError as exc:  # not called: no cost, no log line per message
                paused.append(exc)
                continue
            except PermanentError:
                raise
            except TransientError as exc:
                last = exc
            except Exception as exc:  # noqa: BLE001 - a provider bug must not stop failover
                last = TransientError(f"{type(exc).__name__}: {exc}", provider=channel.provider)
            logger.info("delivery %s: %s failed transiently (%s), trying the next provider",
                        message.delivery_id, channel.provider, last.code)
        if last is not None:
            raise last
        raise min(paused, key=lambda e: e.retry_after_s or 0.0)

    def paused_s(self) -> float:
        """Seconds before any provider of the chain may be called (0: one may be now)."""
        return min(paused_s(c) for c in self.channels)

    def resize_connections(self, size: int) -> None:
        """Calls go out on this chain's threads: each provider may get ``size`` at once."""
        for channel in self.channels:
            channel.resize_connections(size)

    def close(self) -> None:
        try:
            for channel in self.channels:
                channel.close()
        finally:
            super().close()
