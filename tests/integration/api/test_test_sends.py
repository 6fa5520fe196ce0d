"""Template test sends reach verified test recipients only, never a suppressed or STOPped
one, are marked as tests, and are rate-limited; so are previews (per principal key).

Reproduced before: after an unsubscribe, a manager's test send of "Your account is
locked… https://evil.example/login" to that address returned 202.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from return_notify.storage.db import session_scope
from tests.integration.api_helpers import ApiEnv, env_override, make_principals, make_tenant

pytestmark = pytest.mark.integration

PHISHING = "Your account is locked {{ return_id }}: https://evil.example/login {{ cta_url }}"


def _tenant_with_manager() -> tuple[int, str, dict[str, str]]:
    tid, slug, _ = make_tenant()
    keys, _ = make_principals(tid, slug, ("owner",))
    return tid, slug, {"Authorization": f"Bearer {keys['owner']}"}


def _test_send(client: TestClient, auth: dict[str, str], channel: str, to: str) -> Any:
    return client.post("/v1/admin/templates/test-send", headers=auth, json={
        "channel": channel, "milestone": "refund_processed", "to": to,
        "drafts": {"text": PHISHING}})


def test_never_to_an_unsubscribed_or_stopped_address_even_a_verified_one(
        client: TestClient) -> None:
    from return_notify.policy.suppression import suppress
    from return_notify.policy.verified_recipients import add_verified

    tid, _, auth = _tenant_with_manager()
    with session_scope() as s:
        add_verified(s, tid, "email", "ana@example.com", "test")
        add_verified(s, tid, "sms", "+14155550190", "test")
        suppress(s, tid, "email", "Ana@Example.com", "unsubscribe", source="one-click")
        suppress(s, None, "sms", "+14155550190", "stop", source="twilio")
    for channel, to in (("email", "ana@example.com"), ("sms", "+14155550190")):
        r = _test_send(client, auth, channel, to)
        assert r.status_code == 409 and "suppression list" in r.json()["detail"], r.text
    # nor can a suppressed address be made a test recipient again
    again = client.post("/v1/admin/test-recipients", headers=auth,
                        json={"channel": "email", "address": "ana@example.com"})
    assert again.status_code == 409


def test_never_to_an_address_nobody_verified(client: TestClient) -> None:
    _, _, auth = _tenant_with_manager()
    r = _test_send(client, auth, "email", "victim@example.com")
    assert r.status_code == 409 and "not a verified test recipient" in r.json()["detail"]
    assert _test_send(client, auth, "email", "victim@example.com\n").status_code == 422
    assert _test_send(client, auth, "sms", "+1415555\u0661\u0662\u0663").status_code == 422


def test_a_test_message_is_marked_as_one(api_env: ApiEnv) -> None:
    from return_notify.channels.base import Channel, OutboundMessage, SendResult
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.preview import PreviewTenant
    from return_notify.pipeline.test_sends import TEST_HEADER, test_send
    from return_notify.policy.verified_recipients import add_verified

    class Capture(Channel):
        provider = "capture"
        channel = "email"
        sent: list[OutboundMessage] = []

        def send(self, message: OutboundMessage) -> SendResult:
            self.sent.append(message)
            return SendResult("capture", "m-1", "accepted")

    tid, slug, _ = make_tenant()
    with session_scope() as s:
        add_verified(s, tid, "email", "qa@shop.example", "test")
        test_send(s, PreviewTenant(slug), "email", "refund_processed", "QA@Shop.example",
                  get_settings(), provider=Capture())
    [message] = Capture.sent
    assert message.recipient == "qa@shop.example"
    assert message.subject and message.subject.startswith("[TEST] ")
    assert message.headers == {TEST_HEADER: "true"} and message.metadata["test_send"] is True


def test_test_sends_and_previews_are_rate_limited_per_key(client: TestClient) -> None:
    from return_notify.policy.verified_recipients import add_verified

    tid, _, auth = _tenant_with_manager()
    with session_scope() as s:
        add_verified(s, tid, "sms", "+14155550191", "test")
    with env_override(RSN_API_TEST_SEND_RATE="2/h:2", RSN_API_RENDER_RATE="3/m:3"):
        sent = [_test_send(client, auth, "sms", "+14155550191").status_code for _ in range(3)]
        assert sent == [202, 202, 429]
        over = _test_send(client, auth, "sms", "+14155550191")
        assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
        previews = [client.post("/v1/admin/templates/preview", headers=auth, json={
            "channel": "sms", "milestone": "refund_processed"}).status_code for _ in range(4)]
        assert previews == [200, 200, 200, 429]
