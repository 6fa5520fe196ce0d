"""Carrier adapters without a network: signatures as the providers compute them, status → milestone
tables, deterministic event ids, and what a malformed or irrelevant webhook becomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from return_notify.events import Milestone
from return_notify.sources import aftership, easypost, shippo
from return_notify.sources.base import (
    CarrierPayloadError,
    CarrierUpdate,
    normalize_tracking_number,
    parse_time,
)
from tests.sources_samples import (
    aftership_headers,
    aftership_webhook,
    body_of,
    easypost_event,
    easypost_headers,
    shippo_webhook,
)

SECRET = "whsec-0123456789abcdef"


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# ------------------------------------------------------------------ signatures --------

def test_easypost_signature_is_hmac_sha256_hex_of_the_raw_body() -> None:
    body = body_of(easypost_event("EZ1000000001"))
    headers = _lower(easypost_headers(body, SECRET))
    assert headers["x-hmac-signature"].startswith("hmac-sha256-hex=")
    assert easypost.verify(body, headers, {}, SECRET)
    assert not easypost.verify(body + b" ", headers, {}, SECRET)
    assert not easypost.verify(body, headers, {}, SECRET + "x")
    assert not easypost.verify(body, {}, {}, SECRET)


def test_easypost_secret_is_nfkd_normalised_like_the_client_libraries() -> None:
    # "ﬁ" (U+FB01) normalises to "fi" under NFKD: both spellings verify the same signature
    body = b'{"description":"tracker.updated"}'
    assert easypost.signature(body, "\ufb01le-secret") == easypost.signature(body, "file-secret")
    headers = _lower(easypost_headers(body, "file-secret"))
    assert easypost.verify(body, headers, {}, "\ufb01le-secret")


def test_aftership_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = body_of(aftership_webhook("1Z999AA10123456784"))
    headers = _lower(aftership_headers(body, SECRET))
    assert aftership.verify(body, headers, {}, SECRET)
    tampered = body.replace(b"Delivered", b"Exception", 1)
    assert not aftership.verify(tampered, headers, {}, SECRET)
    assert not aftership.verify(body, {"aftership-hmac-sha256": "bm9wZQ=="}, {}, SECRET)


def test_shippo_checks_the_url_token_in_constant_time() -> None:
    body = body_of(shippo_webhook("9205590164917312751089"))
    assert shippo.verify(body, {}, {"token": SECRET}, SECRET)
    assert not shippo.verify(body, {}, {"token": SECRET[:-1]}, SECRET)
    assert not shippo.verify(body, {}, {}, SECRET)


# ------------------------------------------------------------------ status tables -----

@pytest.mark.parametrize(("status", "milestone", "reason"), [
    ("pre_transit", Milestone.LABEL_CREATED, None),
    ("in_transit", Milestone.IN_TRANSIT, None),
    ("out_for_delivery", Milestone.IN_TRANSIT, None),
    ("available_for_pickup", Milestone.IN_TRANSIT, None),
    ("delivered", Milestone.WAREHOUSE_RECEIVED, None),
    ("return_to_sender", Milestone.EXCEPTION, "return_to_sender"),
    ("failure", Milestone.EXCEPTION, "failure"),
    ("error", Milestone.EXCEPTION, "error"),
    ("cancelled", Milestone.EXCEPTION, "label_cancelled"),
    ("unknown", None, None),
])
def test_easypost_statuses(status: str, milestone: Milestone | None, reason: str | None) -> None:
    update = easypost.parse(easypost_event("EZ1", status, status_detail="status_update"))
    assert update is not None
    assert (update.milestone, update.reason) == (milestone, reason)
    assert update.status == status


def test_easypost_exception_reason_prefers_a_specific_status_detail() -> None:
    update = easypost.parse(easypost_event("EZ1", "failure", status_detail="address_not_found"))
    assert update is not None and update.reason == "address_not_found"


@pytest.mark.parametrize(("tag", "milestone"), [
    ("InfoReceived", Milestone.LABEL_CREATED), ("InTransit", Milestone.IN_TRANSIT),
    ("OutForDelivery", Milestone.IN_TRANSIT), ("AvailableForPickup", Milestone.IN_TRANSIT),
    ("AttemptFail", Milestone.IN_TRANSIT), ("Delivered", Milestone.WAREHOUSE_RECEIVED),
    ("Exception", Milestone.EXCEPTION), ("Pending", None), ("Expired", None),
])
def test_aftership_tags(tag: str, milestone: Milestone | None) -> None:
    update = aftership.parse(aftership_webhook("1Z1", tag))
    assert update is not None and update.milestone == milestone


def test_aftership_exception_reason_comes_from_the_subtag_message() -> None:
    update = aftership.parse(aftership_webhook("1Z1", "Exception", subtag="Exception_011",
                                               subtag_message="Returned to sender"))
    assert update is not None and update.reason == "returned_to_sender"


@pytest.mark.parametrize(("status", "milestone", "reason"), [
    ("PRE_TRANSIT", Milestone.LABEL_CREATED, None), ("TRANSIT", Milestone.IN_TRANSIT, None),
    ("DELIVERED", Milestone.WAREHOUSE_RECEIVED, None),
    ("RETURNED", Milestone.EXCEPTION, "package_departed"),
    ("FAILURE", Milestone.EXCEPTION, "package_departed"), ("UNKNOWN", None, None),
])
def test_shippo_statuses(status: str, milestone: Milestone | None, reason: str | None) -> None:
    update = shippo.parse(shippo_webhook("9205", status))
    assert update is not None and (update.milestone, update.reason) == (milestone, reason)


def test_in_transit_carries_the_eta_and_the_tracking_link() -> None:
    ep = easypost.parse(easypost_event("EZ1", est_delivery="2026-12-02T00:00:00Z"))
    af = aftership.parse(aftership_webhook("1Z1", "InTransit", expected_delivery="2026-12-04"))
    sh = shippo.parse(shippo_webhook("9205", eta="2026-12-03T12:00:00Z"))
    assert ep is not None and ep.eta == "2026-12-02T00:00:00+00:00"
    assert ep.tracking_url and ep.tracking_url.startswith("https://track.easypost.com/")
    assert af is not None and af.eta == "2026-12-04" and af.carrier == "ups"
    assert sh is not None and sh.eta == "2026-12-03T12:00:00+00:00"


# ------------------------------------------------------------------ event ids ---------

def test_a_retried_webhook_gives_the_same_event_id() -> None:
    payload = easypost_event("EZ1", tracker_id="trk_abc")
    assert easypost.parse(json.loads(json.dumps(payload))) == easypost.parse(payload)
    first = aftership_webhook("1Z1", "Delivered", tracking_id="t1")
    again = {**first, "event_id": "another-delivery-attempt-of-the-same-update"}
    a, b = aftership.parse(first), aftership.parse(again)
    assert a is not None and b is not None and a.key == b.key


def test_scans_that_change_nothing_share_an_id_and_a_new_eta_does_not() -> None:
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    scan1 = easypost.parse(easypost_event("EZ1", tracker_id="trk_1", at=at))
    scan2 = easypost.parse(easypost_event("EZ1", "out_for_delivery", tracker_id="trk_1",
                                          at=at + timedelta(hours=5)))
    later = easypost.parse(easypost_event("EZ1", tracker_id="trk_1", at=at + timedelta(days=1),
                                          est_delivery="2026-12-05T00:00:00Z"))
    assert scan1 is not None and scan2 is not None and later is not None
    assert scan1.key == scan2.key == "easypost:trk_1:in_transit:2026-12-02"
    assert later.key == "easypost:trk_1:in_transit:2026-12-05"
    delivered = easypost.parse(easypost_event("EZ1", "delivered", tracker_id="trk_1"))
    assert delivered is not None and delivered.key == "easypost:trk_1:warehouse_received"


def test_update_summary_round_trips() -> None:
    update = aftership.parse(aftership_webhook("1Z1", "Exception", custom_fields={
        "return_id": "RMA-7"}))
    assert update is not None and update.return_ref == "RMA-7"
    assert CarrierUpdate.from_summary(json.loads(json.dumps(update.summary()))) == update


# ------------------------------------------------------------------ edge cases --------

@pytest.mark.parametrize(("adapter", "payload"), [
    (easypost, {"description": "batch.created", "result": {"object": "Batch"}}),
    (aftership, {"event": "tracking_pending_time", "msg": {}}),
    (shippo, {"event": "transaction_created", "data": {}}),
])
def test_events_that_are_not_tracking_updates_are_ignored(adapter: Any, payload: Any) -> None:
    assert adapter.parse(payload) is None


@pytest.mark.parametrize(("adapter", "payload"), [
    (easypost, {"description": "tracker.updated", "result": {"status": "in_transit"}}),
    (easypost, []),
    (aftership, {"event": "tracking_update", "msg": {"tag": "InTransit"}}),
    (shippo, {"event": "track_updated", "data": {"tracking_number": "1"}}),
])
def test_malformed_tracking_updates_raise(adapter: Any, payload: Any) -> None:
    with pytest.raises(CarrierPayloadError):
        adapter.parse(payload)


def test_naive_timestamps_are_not_guessed() -> None:
    assert parse_time("2026-11-30T10:00:00") is None
    assert parse_time("2026-11-30T10:00:00Z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_tracking_numbers_are_normalised() -> None:
    assert normalize_tracking_number(" 1z 999-aa1 0123 ") == "1Z999AA10123"
