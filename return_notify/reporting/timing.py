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

from return_notify.reporting.insights import InsightFilter

__all__ = ["time_split"]

_SPLIT = """
WITH x AS (
    SELECT coalesce(e.source, '') AS source, d.channel,
           greatest(0.0, extract(epoch FROM e.received_at - e.occurred_at)) AS lag_s,
           greatest(0.0, extract(epoch FROM d.sent_at - e.received_at)) AS own_s,
           greatest(0.0, extract(epoch FROM d.sent_at - e.occurred_at)) AS total_s
    FROM deliveries d
    JOIN events e ON e.id = d.event_pk
    JOIN tenants t ON t.id = d.tenant_id
    JOIN returns r ON r.id = d.return_pk
    WHERE d.sent_at IS NOT NULL AND {where}
)
SELECT CASE WHEN grouping(source) = 0 THEN source END AS source,
       CASE WHEN grouping(channel) = 0 THEN channel END AS channel,
       grouping(source) AS all_sources, grouping(channel) AS all_channels, count(*) AS n,
       avg(lag_s) AS lag_avg, percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s) AS lag_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_s) AS lag_p95,
       avg(own_s) AS own_avg, percentile_cont(0.5) WITHIN GROUP (ORDER BY own_s) AS own_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY own_s) AS own_p95,
       avg(total_s) AS total_avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY total_s) AS total_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY total_s) AS total_p95,
       sum(lag_s) AS lag_sum, sum(total_s) AS total_sum
FROM x
GROUP BY GROUPING SETS ((source, channel), (source), (channel), ())
ORDER BY grouping(source) DESC, grouping(channel) DESC, source, channel
"""


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def time_split(session: Session, flt: InsightFilter | None = None) -> list[dict[str, Any]]:
    """The split (module docstring) of every notification sent, by source and channel:
    the overall row first (``source`` and ``channel`` None), then per channel, per source,
    and per source and channel. ``source`` ``""`` stands for events without one."""
    flt = flt or InsightFilter()
    where, params = flt.where("d.sent_at")
    out = []
    for row in session.execute(text(_SPLIT.format(where=where)), params).all():
        out.append({
            "source": None if row.all_sources else row.source,
            "channel": None if row.all_channels else row.channel, "n": int(row.n),
            "source_lag_s": {"avg": _r(row.lag_avg), "p50": _r(row.lag_p50),
                             "p95": _r(row.lag_p95)},
            "pipeline_s": {"avg": _r(row.own_avg), "p50": _r(row.own_p50),
                           "p95": _r(row.own_p95)},
            "total_s": {"avg": _r(row.total_avg), "p50": _r(row.total_p50),
                        "p95": _r(row.total_p95)},
            "upstream_share": round(float(row.lag_sum) / float(row.total_sum), 4)
            if row.total_sum else None,
        })
    return out
