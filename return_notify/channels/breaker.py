"""A circuit breaker per network provider, so that an outage pauses sends instead of
becoming a retry storm.

``BreakerChannel(provider_channel, CircuitBreaker(...))`` guards one provider account. The
registry guards every network provider (Twilio, SendGrid, SMTP), alone or inside a
failover chain; the sandbox and the in-app inbox are not guarded (the sandbox's failures
are simulated per message for demos and benchmarks; the inbox is a PostgreSQL write, whose
outages the tasks already retry). States::

    closed ── N consecutive transient failures ──► open ── cooldown over ──► half-open
      ▲                                              ▲                          │
      └──── trial succeeds, or PermanentError ───────┴──── trial fails ─────────┘
                                                           (one trial call)

* **closed**: calls go through. A ``TransientError`` (``RateLimitedError`` included) or an
  unexpected exception counts one failure; a success or a ``PermanentError`` resets the
  count (the provider answered, so it is up: the message is what is wrong).
* **open**: the provider is not called. ``send`` raises ``ProviderPausedError``, a
  ``RateLimitedError`` whose ``retry_after_s`` is the cooldown left. The deliver pipeline
  parks such deliveries without spending an attempt (``pipeline.deliver``): they wait,
  they do not fail. The pause lasts ``RSN_BREAKER_COOLDOWN_S``, or longer when the failure
  that opened it carried a longer Retry-After (capped at ``RSN_BACKOFF_MAX_S``).
* **half-open**: the first call after the cooldown is a trial; calls meanwhile wait
  ``TRIAL_WAIT_S`` for its verdict. Success (or a ``PermanentError``) closes the breaker, a
  transient failure opens it for another cooldown. A trial that never reports (its thread
  was interrupted) is replaced by a new one once a cooldown has passed.

Outcomes of calls admitted before the last change of state (in flight when the breaker
opened) change nothing: a late failure does not extend a pause, a late success does not end
one early. Nothing here sleeps, retries or does I/O; opening and closing log a WARNING and
call ``listener(provider, is_open)`` (the registry passes ``metrics.observe_breaker``: the
gauge ``rsn_provider_breaker_open{provider}``).

**Scope: one breaker per provider per worker process** (breakers live in the channel
objects that ``registry.get_channel`` caches per process). Each pool process learns of an
outage from its own calls, so with P processes P × N calls (plus those already in flight)
fail before all of them have paused, and each sends one trial per cooldown. That bound
is small and known, and in exchange the breaker costs no I/O on the send path and keeps
working when Redis, the shared store it would need, is itself down. Processes are
already coordinated where the provider's quota needs it: the global rate limiter in Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.errors import PermanentError, RateLimitedError

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: how long callers wait while the half-open trial call is in flight
TRIAL_WAIT_S = 1.0

Listener = Callable[[str, bool], None]


class ProviderPausedError(RateLimitedError):
    """The provider's breaker is open, so it was not called; ``retry_after_s`` says when
    to come back. Waiting for it spends no delivery attempt."""

    def __init__(self, provider: str, retry_after_s: float, reason: str) -> None:
        super().__init__(
            f"{provider} paused ({reason}); next call in {retry_after_s:.1f}s",
            code="provider_paused", provider=provider, retry_after_s=retry_after_s,
        )


class CircuitBreaker:
    """The state machine of one provider in one process (thread-safe; see the module doc).

    ``admit()`` returns a ticket for one call or raises ``ProviderPausedError``; the caller
    reports the call with ``success(ticket)``, ``failure(ticket, error)`` or, when it ended
    without a verdict, ``release(ticket)``.
    """

    def __init__(
        self,
        provider: str,
        trip_after: int = 5,
        cooldown_s: float = 30.0,
        *,
        max_pause_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        listener: Listener | None = None,
    ) -> None:
        if trip_after < 1:
            raise ValueError(f"trip_after must be at least 1, not {trip_after}")
        if cooldown_s <= 0:
            raise ValueError(f"cooldown_s must be positive, not {cooldown_s}")
        self.provider = provider
        self.trip_after = trip_after
        self.cooldown_s = cooldown_s
        self.max_pause_s = max(cooldown_s, max_pause_s)
        self._clock = clock
        self._listener = listener
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0  # consecutive, while closed
        self._open_until = 0.0
        self._trial_since: float | None = None
        self._generation = 0  # changes with every state change: tickets older than it are stale
        self._reason = ""

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (an expired pause reads as half-open)."""
        with self._lock:
            if self._state == OPEN and self._clock() >= self._open_until:
                return HALF_OPEN
            return self._state

    def remaining_s(self) -> float:
        """Seconds until a call would be admitted; 0 when closed or when a trial may start."""
        now = self._clock()
        with self._lock:
            if self._state == CLOSED:
                return 0.0
            if self._state == OPEN:
                return max(0.0, self._open_until - now)
            if self._trial_since is None or now - self._trial_since >= self.cooldown_s:
                return 0.0
            return TRIAL_WAIT_S

    def admit(self) -> int:
        """A ticket for one provider call, or ``ProviderPausedError`` while paused."""
        now = self._clock()
        with self._lock:
            if self._state == CLOSED:
                return self._generation
            if self._state == OPEN:
                if now < self._open_until:
                    raise ProviderPausedError(self.provider, self._open_until - now, self._reason)
                self._state, self._trial_since = HALF_OPEN, None
                self._generation += 1
            if self._trial_since is not None:
                if now - self._trial_since < self.cooldown_s:
                    raise ProviderPausedError(self.provider, TRIAL_WAIT_S, "trial call in flight")
                self._generation += 1  # that trial never reported: forget it
            self._trial_since = now
            ticket = self._generation
        logger.info("provider %s: cooldown over, one trial call decides whether it resumes",
                    self.provider)
        return ticket

    def success(self, ticket: int) -> None:
        """The call succeeded, or the provider answered with a ``PermanentError``."""
        with self._lock:
            if ticket != self._generation:
                return
            self._failures = 0
            if self._state == CLOSED:
                return
            self._state, self._trial_since = CLOSED, None
            self._generation += 1
        logger.warning("provider %s answered the trial call: breaker closed, sends resume",
                       self.provider)
        self._notify(False)

    def failure(self, ticket: int, error: BaseException) -> None:
        """The call failed transiently (or raised something unexpected)."""
        retry_after = getattr(error, "retry_after_s", None) or 0.0
        with self._lock:
            if ticket != self._generation or self._state == OPEN:
                return
            trial = self._state == HALF_OPEN
            if not trial:
                self._failures += 1
                if self._failures < self.trip_after:
                    return
            pause = max(self.cooldown_s, min(float(retry_after), self.max_pause_s))
            failures = self._failures
            code = getattr(error, "code", None) or type(error).__name__
            self._reason = (f"trial call failed: {code}" if trial
                            else f"{failures} consecutive transient failures, last: {code}")
            self._state, self._open_until, self._trial_since = OPEN, self._clock() + pause, None
            self._failures = 0
            self._generation += 1
        if trial:
            logger.warning("provider %s still failing (trial call: %s): paused for another "
                           "%.0f s; deliveries wait without spending attempts",
                           self.provider, code, pause)
        else:
            logger.warning("provider %s paused for %.0f s after %d consecutive transient "
                           "failures (last: %s); deliveries wait without spending attempts",
                           self.provider, pause, failures, code)
        self._notify(True)

    def release(self, ticket: int) -> None:
        """The call ended without a verdict: a trial may be made again at once."""
        with self._lock:
            if ticket == self._generation and self._state == HALF_OPEN:
                self._trial_since = None

    def _notify(self, is_open: bool) -> None:
        if self._listener is None:
            return
        try:
            self._listener(self.provider, is_open)
        except Exception:  # noqa: BLE001 - observing the breaker never fails a send
            logger.warning("breaker listener failed for %s", self.provider, exc_info=True)


class BreakerChannel(Channel):
    """One provider behind its circuit breaker; same ``provider`` and ``channel`` names."""

    def __init__(self, inner: Channel, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.breaker = breaker
        self.provider = inner.provider
        self.channel = inner.channel

    def send(self, message: OutboundMessage) -> SendResult:
        ticket = self.breaker.admit()
        try:
            result = self.inner.send(message)
        except PermanentError:
            self.breaker.success(ticket)  # the provider answered: it is up
            raise
        except Exception as exc:  # TransientError, RateLimitedError, or a provider bug
            self.breaker.failure(ticket, exc)
            raise
        except BaseException:  # interrupted (time limit, shutdown): no verdict
            self.breaker.release(ticket)
            raise
        self.breaker.success(ticket)
        return result

    def paused_s(self) -> float:
        """Seconds before this provider may be called again (0: now)."""
        return self.breaker.remaining_s()

    def resize_connections(self, size: int) -> None:
        """Calls go out on this wrapper's threads, through the provider's connections."""
        self.inner.resize_connections(size)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            super().close()


def paused_s(channel: Channel) -> float:
    """Seconds before ``channel`` may call any provider again; 0 when it may now, or when
    it has no breaker. (A ``FailoverChannel`` answers for its whole chain.)"""
    method = getattr(channel, "paused_s", None)
    return float(method()) if callable(method) else 0.0
