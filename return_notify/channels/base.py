"""The channel interface: ``send(message) -> SendResult`` or a typed ``DeliveryError``.

A channel never sleeps to throttle, never retries and never touches the pipeline's
database: the deliver task owns retries, rate limits and the record of every attempt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
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


class Channel(ABC):
    """One provider account for one channel."""

    #: provider name recorded on deliveries and attempts ("sandbox", "sendgrid", ...)
    provider: str = "base"
    channel: str = ""

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
        results: list[SendResult | DeliveryError] = []
        for message in messages:
            try:
                results.append(self.send(message))
            except DeliveryError as exc:
                results.append(exc)
            except Exception as exc:  # noqa: BLE001 - classified at the boundary
                results.append(
                    TransientError(f"{type(exc).__name__}: {exc}", provider=self.provider)
                )
        return results

    def close(self) -> None:
        """Release connections; called when a worker process shuts down."""
