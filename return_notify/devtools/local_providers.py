"""Run the local Twilio and SendGrid servers for the demo, the benchmark and chaos tests,
and count exactly what the "providers" received (sends per delivery, duplicates)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.fakes.twilio_server import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    TwilioFakeServer,
)

SMS_SENDER = "+15005550006"


@dataclass
class LocalProviders:
    twilio: TwilioFakeServer
    sendgrid: SendGridFakeServer

    def env(self) -> dict[str, str]:
        """``RSN_*`` for workers: real SDKs, pointed at the local servers."""
        return {
            "RSN_EMAIL_PROVIDER": "sendgrid", "RSN_SENDGRID_API_KEY": FAKE_API_KEY,
            "RSN_SENDGRID_BASE_URL": self.sendgrid.base_url,
            "RSN_SMS_PROVIDER": "twilio", "RSN_TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
            "RSN_TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN, "RSN_TWILIO_FROM": SMS_SENDER,
            "RSN_TWILIO_BASE_URL": self.twilio.base_url,
            # real email providers need one (channels.registry.compliance_problems)
            "RSN_UNSUBSCRIBE_SECRET": os.environ.get("RSN_UNSUBSCRIBE_SECRET")
            or "local-providers-unsubscribe-secret",
        }

    def accepted_per_delivery(self) -> Counter[tuple[str, int]]:
        """How many times each delivery was accepted (2xx) by a provider."""
        seen: Counter[tuple[str, int]] = Counter()
        for r in self.sendgrid.mails():
            if 200 <= r.status < 300 and isinstance(r.body, dict):
                did = (r.body.get("custom_args") or {}).get("delivery_id")
                if did:
                    seen[("email", int(did))] += 1
        for r in self.twilio.messages():
            if 200 <= r.status < 300 and isinstance(r.body, dict):
                query = parse_qs(urlsplit(str(r.body.get("StatusCallback", ""))).query)
                if query.get("delivery_id"):
                    seen[("sms", int(query["delivery_id"][0]))] += 1
        return seen

    def duplicate_sends(self) -> int:
        """Accepted sends beyond the first per delivery."""
        return sum(n - 1 for n in self.accepted_per_delivery().values() if n > 1)


@contextmanager
def local_providers(latency_ms: float = 0.0) -> Iterator[LocalProviders]:
    """Both servers on free 127.0.0.1 ports for the duration (threads of this process)."""
    with TwilioFakeServer(latency_ms=latency_ms) as tw, \
            SendGridFakeServer(latency_ms=latency_ms) as sg:
        yield LocalProviders(tw, sg)
