"""The sandbox provider: accepts every channel, records what it received, fails on request.

It stands in for a real provider in the demo, the tests and the benchmark. What it
"received" is written to its own table (``sandbox_messages``) through its own autocommit
connection, as an external provider's log would be: the pipeline's transactions never
include it, so duplicate sends are visible exactly. Failures are injected two ways:

* rates (``RSN_SANDBOX_TRANSIENT_FAILURE_RATE`` / ``..._PERMANENT_FAILURE_RATE``), random;
* magic recipients, deterministic, like a provider's test numbers: a recipient containing
  ``fail-permanent`` always fails permanently; ``fail-transient-N`` fails transiently on
  attempts 1..N and then succeeds; ``fail-always`` fails transiently on every attempt.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Sequence

from sqlalchemy import Engine

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.errors import DeliveryError, PermanentError, TransientError
from return_notify.storage.statements import Statement

_TRANSIENT_N = re.compile(r"fail-transient-(\d+)")

#: what the sandbox "received": one row per call, all of a batch in one statement
_COLUMNS = ("delivery_id", "channel", "recipient", "subject", "body", "html",
            "provider_message_id")
_INSERT = Statement(f"""
INSERT INTO sandbox_messages ({", ".join(_COLUMNS)})
SELECT * FROM unnest(CAST(:delivery_id AS bigint[]), CAST(:channel AS text[]),
                     CAST(:recipient AS text[]), CAST(:subject AS text[]),
                     CAST(:body AS text[]), CAST(:html AS text[]),
                     CAST(:provider_message_id AS text[]))
""")


class SandboxChannel(Channel):
    provider = "sandbox"

    def __init__(
        self,
        channel: str,
        engine: Engine | None = None,
        latency_ms: float = 0.0,
        transient_failure_rate: float = 0.0,
        permanent_failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.channel = channel
        self._engine = engine
        self._latency_s = latency_ms / 1000.0
        self._transient = transient_failure_rate
        self._permanent = permanent_failure_rate
        self._rng = rng or random.Random()

    def _check(self, message: OutboundMessage) -> None:
        rcpt = message.recipient or ""
        if "fail-permanent" in rcpt:
            raise PermanentError("sandbox: recipient rejected", code="sandbox-400",
                                 provider=self.provider)
        if "fail-always" in rcpt:
            raise TransientError("sandbox: provider unavailable", code="sandbox-503",
                                 provider=self.provider)
        match = _TRANSIENT_N.search(rcpt)
        if match and message.attempt <= int(match.group(1)):
            raise TransientError(f"sandbox: transient failure on attempt {message.attempt}",
                                 code="sandbox-503", provider=self.provider)
        if self._permanent and self._rng.random() < self._permanent:
            raise PermanentError("sandbox: injected permanent failure", code="sandbox-400",
                                 provider=self.provider)
        if self._transient and self._rng.random() < self._transient:
            raise TransientError("sandbox: injected transient failure", code="sandbox-503",
                                 provider=self.provider)

    def send(self, message: OutboundMessage) -> SendResult:
        result = self.send_many([message])[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult | DeliveryError]:
        results: list[SendResult | DeliveryError] = []
        rows = []
        for message in messages:
            if self._latency_s:
                time.sleep(self._latency_s)  # simulated provider round trip
            try:
                self._check(message)
            except DeliveryError as exc:
                results.append(exc)
                continue
            msg_id = "SB" + uuid.uuid4().hex
            rows.append({
                "delivery_id": message.delivery_id, "channel": message.channel,
                "recipient": message.recipient, "subject": message.subject,
                "body": message.text, "html": message.html, "provider_message_id": msg_id,
            })
            results.append(SendResult(self.provider, msg_id, "accepted"))
        if rows and self._engine is not None:
            try:
                with self._engine.begin() as conn:
                    _INSERT.run(conn, {key: [row[key] for row in rows] for key in _COLUMNS})
            except Exception as exc:  # noqa: BLE001 - the "provider" is down: nothing was sent
                err = TransientError(f"sandbox store unavailable: {exc}", provider=self.provider)
                return [err if isinstance(r, SendResult) else r for r in results]
        return results
