"""The month an id carries and the partition bounds: pure, no database."""

from __future__ import annotations

from return_notify.storage.partitions import Month, partition_name


def test_an_id_carries_its_month() -> None:
    m = Month(2026, 11)
    assert (m.lo, m.hi) == (2026110000000000, 2026120000000000)
    assert Month.of_id(2026110000012345) == m and Month.of_id(12345) is None
    assert Month(2026, 12).plus(1) == Month(2027, 1) and str(Month(2027, 1).plus(-13)) == "2025-12"
    assert partition_name("deliveries", m) == "deliveries_p202611"
    assert Month.parse("202611") == m and m.start.isoformat() == "2026-11-01T00:00:00+00:00"
