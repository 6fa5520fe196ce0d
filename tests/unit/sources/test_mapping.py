"""Feed mappings without a network: the path language, the example WMS/ERP mappings, and every
problem a bad payload or a bad mapping file gets."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from return_notify.config.settings import reset_settings
from return_notify.sources.mapping import MappingError, SourceMapping
from return_notify.sources.mapping_files import BUILTIN_DIR, get_mapping, parse_mapping, resolve
from return_notify.sources.paths import MISSING, PathSyntaxError, compile_path, compile_template
from tests.sources_samples import erp_credit_memo, wms_message

DOC = {"header": {"id": 7, "lines": [{"sku": "A", "qty": 2}, {"sku": "B"}]},
       "odd key": {"x": 1}, "list": [1, 2, 3]}


@pytest.mark.parametrize(("path", "expected"), [
    ("header.id", 7), ("header.lines[0].sku", "A"), ("header.lines[-1].sku", "B"),
    ("header.lines[*].sku", ["A", "B"]), ("header.lines[*].qty", [2]),
    ('["odd key"].x', 1), ("$.list[1]", 2), ("header.nope", MISSING), ("list[9]", MISSING),
])
def test_paths(path: str, expected: Any) -> None:
    assert compile_path(path).get(DOC, DOC) == expected


@pytest.mark.parametrize("bad", ["a..b", ".a", "a[", "a[x]", ""])
def test_bad_paths_say_where(bad: str) -> None:
    with pytest.raises(PathSyntaxError):
        compile_path(bad)


def test_templates_fill_placeholders_and_report_missing_ones() -> None:
    t = compile_template("erp-{header.id}-{header.lines[0].sku}")
    assert t.render(DOC) == ("erp-7-A", [])
    assert compile_template("x-{nope}").render(DOC) == (None, ["nope"])


# ------------------------------------------------------------------ example mappings --

def test_example_erp_credit_memo_becomes_a_refund_event() -> None:
    [rec] = resolve("example-erp").apply(erp_credit_memo("RMA-100042"), "acme")
    assert rec.problems == [] and rec.skipped is None
    assert rec.event == {
        "schema_version": 1, "event_id": "erp-9000123-POSTED", "tenant": "acme",
        "return_id": "RMA-100042", "milestone": "refund_processed",
        "occurred_at": "2026-11-30T09:30:00Z",
        "customer": {"id": "C-991", "name": "Ana Silva", "email": "ana@example.com",
                     "phone": "+14155550123", "locale": "en-US"},
        "data": {"refund_amount": "49.9", "currency": "USD", "refund_method": "original_payment"},
        "source": "example-erp",
    }


def test_example_wms_maps_status_codes_local_times_and_items() -> None:
    recs = resolve("example-wms").apply(
        [wms_message("RMA-1", "RCV", receipt="R1"), wms_message("RMA-1", "HOLD"),
         wms_message("RMA-1", "DMG", receipt="R1")], "acme")
    received, hold, damaged = recs
    assert received.event is not None and received.problems == []
    assert received.event["milestone"] == "warehouse_received"
    assert received.event["event_id"] == "wms-R1-RCV"
    assert received.event["occurred_at"] == "2026-11-28T09:30:12-05:00"  # New York in November
    assert received.event["data"]["items"] == ["Organic cotton tee, M, blue"]
    assert received.event["source"] == "wms"
    assert received.notes  # the customer comes from the return's earlier events
    assert hold.skipped and hold.event is None and hold.problems == []
    assert damaged.event is not None and damaged.event["milestone"] == "exception"
    assert damaged.event["data"]["reason"] == "parcel_damaged"


def test_every_problem_of_a_record_is_reported_with_the_field_and_the_path() -> None:
    bad = erp_credit_memo("RMA-1", "TELEPORTED")
    bad["header"]["postedAt"] = "last tuesday"
    bad["customer"]["email"] = "not-an-address"
    del bad["header"]["returnOrder"]
    [rec] = resolve("example-erp").apply(bad, "acme")
    by_field = {p.field: p for p in rec.problems}
    assert set(by_field) == {"milestone", "occurred_at", "return_id", "customer.email"}
    assert "'TELEPORTED' is not in the mapping's table" in by_field["milestone"].message
    assert by_field["milestone"].path == "header.status"
    assert by_field["return_id"].message == "no value at header.returnOrder"
    assert "e-mail" in by_field["customer.email"].message or "email" in by_field[
        "customer.email"].message


def test_records_path_and_root_fields() -> None:
    m = parse_mapping(yaml.safe_load(textwrap.dedent("""
        source: batch-feed
        records: "batch.items[*]"
        fields:
          event_id: "b-{$.batch.id}-{n}"
          return_id: rma
          milestone: {path: s, map: {"10": return_approved, "20": return_rejected}}
          occurred_at: {path: at, type: datetime, format: epoch_ms}
          customer.id: {path: cust, type: string}
          data.reason: {path: why, default: unspecified}
          region: {path: $.batch.region}
    """)))
    payload = {"batch": {"id": "B9", "region": "EU-DE", "items": [
        {"n": 1, "rma": "R1", "s": 10, "at": 1796031000000, "cust": 42},
        {"n": 2, "rma": "R2", "s": 20, "at": 1796031000000, "cust": 43, "why": "too_late"}]}}
    first, second = m.apply(payload, "acme")
    assert first.problems == [] and second.problems == []
    assert first.event is not None and second.event is not None
    assert (first.event["event_id"], first.event["milestone"]) == ("b-B9-1", "return_approved")
    assert first.event["customer"] == {"id": "42"} and first.event["region"] == "EU-DE"
    assert first.event["data"] == {"reason": "unspecified"}
    assert second.event["data"] == {"reason": "too_late"}


@pytest.mark.parametrize(("doc", "expected"), [
    ({"source": "x", "fields": {"return_id": "a", "customer.id": "c"}}, "fields.event_id is required"),
    ({"source": "x", "fields": {"event_id": "{a}", "colour": "c", "customer.id": "c"}},
     "unknown event field 'colour'"),
    ({"source": "x", "fields": {"event_id": "{a}", "tenant": "t", "customer.id": "c"}},
     "the tenant comes from the API key"),
    ({"source": "x", "fields": {"event_id": "{a..b}", "customer.id": "c"}}, "cannot read"),
    ({"source": "x", "fields": {"event_id": "{a}", "customer.id": "c",
                                "milestone": {"path": "s", "map": {"A": "shipped"}}}},
     "not milestones: ['shipped']"),
    ({"source": "x", "fields": {"event_id": "{a}", "customer.id": {"path": "c", "typo": 1}}},
     "unknown keys ['typo']"),
    ({"source": "x", "fields": {"event_id": "{a}"}}, "customer.id is required"),
    ({"source": "Bad Name", "fields": {"event_id": "{a}", "customer.id": "c"}}, "source:"),
    ({"source": "x", "fields": {"event_id": "{a}", "customer.id": "c",
                                "occurred_at": {"path": "t", "timezone": "Mars/Base"}}},
     "unknown time zone"),
])
def test_mapping_file_mistakes_are_explained(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, "x.yaml")
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_builtin_examples_load_and_operator_dirs_override_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert {p.stem for p in BUILTIN_DIR.glob("*.yaml")} >= {"example-wms", "example-erp"}
    own = tmp_path / "mine.yaml"
    own.write_text("source: example-erp\ndescription: ours\nfields:\n  event_id: '{id}'\n"
                   "  customer.id: c\n")
    monkeypatch.setenv("RSN_SOURCE_MAPPING_DIRS", str(tmp_path))
    reset_settings()
    try:
        found = get_mapping("example-erp")
        assert isinstance(found, SourceMapping) and found.description == "ours"
    finally:
        monkeypatch.delenv("RSN_SOURCE_MAPPING_DIRS")
        reset_settings()
    assert get_mapping("example-erp") is not None
    assert get_mapping("example-erp").description != "ours"  # type: ignore[union-attr]
