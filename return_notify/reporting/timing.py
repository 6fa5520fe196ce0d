"""Where the time goes: a notification's time to status update split into the source's lag
and the pipeline's own.

* **source lag** = ``occurred_at`` → ``received_at``: the status changed in the WMS, ERP or
  carrier system, and its event reached us this much later (the upstream's share);
* **pipeline** = ``received_at`` → ``sent_at``: ingest, rules, queues, rendering and the
  provider call (ours);
* **total** = ``occurred_at`` → ``sent_at`` (what the KPIs' latency reports).

A corpus of week-old events shows a week of total latency with a pipeline of seconds: this
split says whose the delay is. Negative differences (a source clock ahead of ours) count as
zero. Per source and channel, with the source-only, channel-only and overall rows
(``source``/``channel`` None), each with count, mean, p50 and p95 in seconds and the
upstream share of the summed total time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.reporting.insights import InsightFilter, sent_notifications

__all__ = ["time_split"]

_SPLIT = """
WITH x AS (
    SELECT coalesce(e.source, '') AS source, d.channel,
           greatest(0.0, extract(epoch FROM e.received_at - e.occurred_at)) AS lag_s,
           greatest(0.0, extract(epoch FROM d.sent_at - e.received_at)) AS own_s,
           greatest(0.0, extract(epoch FROM d.sent_at - e.occurred_at)) AS total_s
    FROM {sent}
    {events}
)
SELECT CASE WHEN grouping(source) = 0 THEN source END AS source,
       CASE WHEN grouping(channel) = 0 THEN channel END AS channel,
       grouping(source) AS all_sources, grouping(channel) AS all_channels, count(*) AS n,
       avg(lag_s) AS lag_avg, avg(own_s) AS own_avg, avg(total_s) AS total_avg,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY lag_s) AS lag_q,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY own_s) AS own_q,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY total_s) AS total_q,
       sum(lag_s) AS lag_sum, sum(total_s) AS total_sum
FROM x
GROUP BY GROUPING SETS ((source, channel), (source), (channel), ())
ORDER BY grouping(source) DESC, grouping(channel) DESC, source, channel
"""


#: every sent notification's event: a hash join; a bounded set's: one lookup each by primary
#: key (LIMIT keeps the planner from flattening it into a join that reads every event)
_WHOLE = "JOIN events e ON e.id = d.event_pk"
_LOOKUP = ("CROSS JOIN LATERAL (SELECT e.source, e.received_at, e.occurred_at FROM events e "
           "WHERE e.id = d.event_pk LIMIT 1) e")


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def _stats(avg: Any, q: list[float] | None) -> dict[str, float | None]:
    p50, p95 = q or (None, None)  # no rows: the overall row has no percentiles
    return {"avg": _r(avg), "p50": _r(p50), "p95": _r(p95)}


def time_split(session: Session, flt: InsightFilter | None = None,
               latest: int | None = None) -> list[dict[str, Any]]:
    """The split (module docstring) of every notification sent, by source and channel:
    the overall row first (``source`` and ``channel`` None), then per channel, per source,
    and per source and channel. ``source`` ``""`` stands for events without one.
    ``latest``: of only that many deliveries sent, the last created."""
    sent, params = sent_notifications(flt or InsightFilter(), latest)
    out = []
    sql = _SPLIT.format(sent=sent, events=_WHOLE if latest is None else _LOOKUP)
    for row in session.execute(text(sql), params).all():
        out.append({
            "source": None if row.all_sources else row.source,
            "channel": None if row.all_channels else row.channel, "n": int(row.n),
            "source_lag_s": _stats(row.lag_avg, row.lag_q),
            "pipeline_s": _stats(row.own_avg, row.own_q),
            "total_s": _stats(row.total_avg, row.total_q),
            "upstream_share": round(float(row.lag_sum) / float(row.total_sum), 4)
            if row.total_sum else None,
        })
    return out
