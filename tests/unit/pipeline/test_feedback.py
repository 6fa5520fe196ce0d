"""Provider feedback: how a SendGrid event maps to a delivery and to a suppression reason."""

from __future__ import annotations

from return_notify.pipeline.feedback import _delivery_id, _pmid, _suppression_reason


def test_sendgrid_event_mapping() -> None:
    assert _pmid({"sg_message_id": "abc123.filterdrecv-p3.1"}) == "abc123"
    assert _delivery_id({"delivery_id": "42"}) == 42
    assert _delivery_id({"delivery_id": 42}) == 42
    assert _delivery_id({"delivery_id": "x"}) is None
    assert _delivery_id({"delivery_id": True}) is None
    assert _suppression_reason("bounce", {"type": "bounce"}) == "hard_bounce"
    assert _suppression_reason("bounce", {"type": "blocked"}) is None
    assert _suppression_reason("dropped", {"reason": "Bounced Address"}) == "hard_bounce"
    assert _suppression_reason("dropped", {"reason": "Invalid"}) is None
    assert _suppression_reason("group_unsubscribe", {}) == "unsubscribe"
    assert _suppression_reason("open", {}) is None
