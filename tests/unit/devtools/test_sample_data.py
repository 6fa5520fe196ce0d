"""The demo's sample stream: enough events, returns, tenants and locales, and the awkward cases."""

from __future__ import annotations

from return_notify.devtools.sample_data import make_stream, stamp


def test_sample_stream_meets_the_demo_brief() -> None:
    s = make_stream()
    valid = [e for e in s.events if not e["event_id"].split("-", 1)[-1].startswith("bad")]
    assert len(s.events) >= 2000 and s.returns >= 500
    assert s.duplicates > 0 and s.out_of_order > 0 and s.invalid > 0
    assert {e["milestone"] for e in valid} >= {
        "return_initiated", "return_approved", "label_created", "shipment_dispatched",
        "in_transit", "warehouse_received", "inspection_completed", "restocked",
        "refund_processed", "return_completed", "return_rejected", "return_cancelled",
        "exception"}
    assert len({e["tenant"] for e in s.events}) >= 3
    assert len({e["customer"].get("locale") for e in s.events}) >= 3
    stamped = stamp(s.events)
    assert all("occurred_at" in e for e in stamped)
