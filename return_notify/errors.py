"""The one exception tree of return-notify; errors are classified where they happen.

::

    ReturnNotifyError
    ├── ConfigurationError          settings that cannot work (missing key, bad URL)
    ├── EventValidationError        an event breaks the contract (per-field errors attached)
    ├── PublishError                the broker refused or was unreachable after bounded retries
    └── DeliveryError               raised by channels; decides what the pipeline does next
        ├── TransientError          retry with backoff (timeouts, 5xx, provider hiccups)
        │   └── RateLimitedError    retry, waiting at least ``retry_after_s`` (429, Twilio 20429)
        └── PermanentError          never retried (4xx, invalid recipient, STOP, bad template)

Nothing downstream parses error strings: the class, ``code`` and ``retry_after_s`` say it all.
"""

from __future__ import annotations

from typing import Any


class ReturnNotifyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(ReturnNotifyError):
    """The configuration cannot work; the message says which setting to fix."""


class EventValidationError(ReturnNotifyError):
    """An event does not satisfy the v1 contract.

    ``errors`` is a list of ``{"field": "customer.email", "message": "...", "type": "..."}``.
    """

    def __init__(self, errors: list[dict[str, Any]], event_id: str | None = None) -> None:
        self.errors = errors
        self.event_id = event_id
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid event {event_id or '?'}: {summary}{more}")


class PublishError(ReturnNotifyError):
    """Events could not be handed to the broker; nothing after the failing chunk was sent.

    ``published`` counts the events that did reach the broker before the failure, so a
    caller can resume from there (event ids make a resend safe: duplicates are no-ops).
    """

    def __init__(self, message: str, published: int = 0) -> None:
        self.published = published
        super().__init__(message)


class DeliveryError(ReturnNotifyError):
    """A channel could not send. Subclasses say whether trying again can help."""

    def __init__(self, message: str, code: str | None = None, provider: str | None = None) -> None:
        self.code = code
        self.provider = provider
        super().__init__(message)


class TransientError(DeliveryError):
    """Trying again later may succeed (timeout, connection reset, 5xx)."""


class RateLimitedError(TransientError):
    """The provider asked us to slow down; ``retry_after_s`` is the wait it asked for."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        provider: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, code=code, provider=provider)


class PermanentError(DeliveryError):
    """Trying again cannot succeed (invalid address, opted out, rejected content)."""
