"""``bench --history N``: before the throughput runs, about N deliveries of history in the
run's own database (``history.generate_history``), the KPI aggregates rolled up and the
reads that grow with history timed (``history_reads.measure_reads``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def fill_history(rows: int, console: Console | None = None, repeat: int = 3,
                 cli: bool = False) -> dict[str, Any]:
    """Add about ``rows`` deliveries of history to ``RSN_DATABASE_URL``, roll up, time the
    reads: {"generated", "rollup", "reads"}."""
    from return_notify.devtools.history import HistoryResult, generate_history
    from return_notify.devtools.history_reads import measure_reads
    from return_notify.reporting.rollup import rollup
    from return_notify.storage.db import get_engine

    console = console or Console(stderr=True, quiet=True)
    console.print(f"generating ~{rows:,} deliveries of history, rolling up, timing reads …")
    made = generate_history(get_engine(), rows=rows) if rows > 0 else HistoryResult()
    out: dict[str, Any] = {"generated": made.as_dict()}
    with get_engine().connect() as conn:
        out["rollup"] = rollup(conn).as_dict()
    out["reads"] = measure_reads(repeat=repeat, cli=cli)
    console.print("history reads (s): " + ", ".join(
        f"{k[:-2]} {v}" for k, v in out["reads"].items() if k.endswith("_s")))
    return out
