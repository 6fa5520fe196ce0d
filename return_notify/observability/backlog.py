"""``rsn_backlog_age_seconds{channel}``: how long the oldest delivery that should be going out
has waited, read from PostgreSQL (the system of record) at scrape time.

A queue's length says how much waits; this says for how long, which is what a customer
notices and what the backlog alert watches. A delivery waits from when it became due: a
``pending`` one since it was last touched (created, or re-enqueued), a ``retrying`` or
``scheduled`` one since its ``next_attempt_at``. Served by the worker that consumes the
``maintenance`` queue only (one query per scrape for the deployment, not one per replica),
over a connection of its own that is closed after each scrape: the worker's pool processes
never inherit it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

_QUERY = """
SELECT channel, extract(epoch FROM now() - min(since)) AS age FROM (
    SELECT channel, min(updated_at) AS since FROM deliveries
     WHERE state = 'pending' GROUP BY channel
    UNION ALL
    SELECT channel, min(next_attempt_at) FROM deliveries
     WHERE state IN ('retrying', 'scheduled') AND next_attempt_at <= now() GROUP BY channel
) due GROUP BY channel
"""
#: a scrape never waits on PostgreSQL longer than this
TIMEOUT_MS = 2000


class BacklogCollector:
    """``rsn_backlog_age_seconds{channel}`` (0 for a channel with nothing due) and
    ``rsn_backlog_up`` (0 when PostgreSQL did not answer the scrape)."""

    def __init__(self, channels: tuple[str, ...]) -> None:
        self._channels = channels
        self._engine: Any = None

    def describe(self) -> list[Any]:
        return []  # no I/O when registered

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        age = GaugeMetricFamily("rsn_backlog_age_seconds", "Seconds the oldest due delivery "
                                "of a channel has waited (pending, or retrying/scheduled past "
                                "its next attempt); 0: nothing due", labels=["channel"])
        up = GaugeMetricFamily("rsn_backlog_up", "1 if PostgreSQL answered the backlog scrape")
        try:
            rows = dict(self._query())
        except Exception as exc:  # noqa: BLE001 - a scrape reports, never raises
            log.warning("backlog scrape failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for channel in sorted(set(self._channels) | set(rows)):
            age.add_metric([channel], max(0.0, float(rows.get(channel) or 0.0)))
        up.add_metric([], 1)
        yield from (age, up)

    def _query(self) -> list[tuple[str, float]]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            from return_notify.storage.db import connect_args, database_url

            args = {**connect_args(), "options": f"-c statement_timeout={TIMEOUT_MS}",
                    "connect_timeout": 3}
            self._engine = create_engine(database_url(), poolclass=NullPool, connect_args=args)
        with self._engine.connect() as conn:
            return [(str(c), float(a)) for c, a in conn.execute(text(_QUERY))]
