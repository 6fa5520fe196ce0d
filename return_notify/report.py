"""Rich tables for `stats` and the demo summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from return_notify.storage.models import ALL_STATES


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.0f} ms"


def stats_tables(data: dict[str, Any], extra: dict[str, str] | None = None) -> list[Table]:
    ev = data["events"]
    t1 = Table("events", "count", title="Events")
    for label, key in (("accepted", "accepted"), ("notified", "notified"),
                       ("stale, not notified", "stale"), ("repeat, not notified", "repeat"),
                       ("no reachable channel", "no_channel"), ("rejected (invalid)", "rejected")):
        t1.add_row(label, f"{ev[key]:,}")
    for k, v in (extra or {}).items():
        t1.add_row(k, v)
    by_channel = data["deliveries"]["by_channel"]
    states = [s for s in ALL_STATES if any(s in c for c in by_channel.values())]
    t2 = Table("channel", *states, "total", title="Notifications by channel and state")
    for ch, counts in sorted(by_channel.items()):
        t2.add_row(ch, *[f"{counts.get(s, 0):,}" for s in states], f"{sum(counts.values()):,}")
    lat = data["latency_s"]
    t3 = Table("occurred_at → sent", "value", title="Latency")
    t3.add_row("p50", _ms(lat["occurred_to_sent_p50"]))
    t3.add_row("p95", _ms(lat["occurred_to_sent_p95"]))
    t3.add_row("p99", _ms(lat["occurred_to_sent_p99"]))
    t3.add_row("samples", f"{lat['samples']:,}")
    return [t1, t2, t3]
