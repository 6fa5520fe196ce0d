"""``bench --history N``: before the throughput runs, about N deliveries of history in the
run's own database (``history.generate_history``), the KPI aggregates rolled up and the
reads that grow with history timed (``history_reads.measure_reads``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

#: the tables the history fills (their partitions are vacuumed through the parent)
_FILLED = ("returns", "events", "event_keys", "deliveries", "delivery_attempts")


def fill_history(rows: int, console: Console | None = None, repeat: int = 3,
                 cli: bool = False) -> dict[str, Any]:
    """Add about ``rows`` deliveries of history to ``RSN_DATABASE_URL``, roll up, time the
    reads: {"generated", "rollup", "reads"}."""
    from return_notify.config.settings import get_settings
    from return_notify.devtools.history import HistoryResult, generate_history
    from return_notify.devtools.history_reads import measure_reads
    from return_notify.reporting.rollup import rollup
    from return_notify.storage.db import get_engine

    console = console or Console(stderr=True, quiet=True)
    console.print(f"generating ~{rows:,} deliveries of history, rolling up, timing reads …")
    made = generate_history(get_engine(), rows=rows) if rows > 0 else HistoryResult()
    out: dict[str, Any] = {"generated": made.as_dict()}
    with get_engine().connect() as conn:
        out["rollup"] = rollup(conn, hourly_days=get_settings().stats_hourly_days,
                                   daily_months=get_settings().stats_daily_months).as_dict()
    out["settle_s"] = settle(get_engine())
    out["reads"] = measure_reads(repeat=repeat, cli=cli)
    console.print("history reads (s): " + ", ".join(
        f"{k[:-2]} {v}" for k, v in out["reads"].items() if k.endswith("_s")))
    return out


def settle(engine: Engine) -> float:
    """VACUUM (ANALYZE) the filled tables and CHECKPOINT: a year of history is not written in
    the minute before the measurement, so the autovacuum of freshly inserted partitions and
    the flush of their dirty pages should not run during it. Seconds taken (a role that may
    not CHECKPOINT skips that step)."""
    started = time.monotonic()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in _FILLED:
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        try:
            conn.execute(text("CHECKPOINT"))
        except SQLAlchemyError as exc:  # pg_checkpoint is a role of its own (PostgreSQL 15+)
            log.warning("no CHECKPOINT before the measurement: %s", exc.__class__.__name__)
    return round(time.monotonic() - started, 1)
