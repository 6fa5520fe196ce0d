"""The demo's customers: switch the insights on for the demo's tenants, then play what their
customers do with the messages the pipeline sent (``sample_data.reactions``), through the
same recording functions the webhooks and the link endpoints use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.devtools.sample_data import Stream, reactions

_UNITS = text("""
SELECT t.slug, r.return_id, d.milestone, d.channel, r.id AS return_pk, d.tenant_id,
       max(d.id) AS delivery_id, min(d.sent_at) AS sent_at
FROM deliveries d JOIN returns r ON r.id = d.return_pk JOIN tenants t ON t.id = d.tenant_id
WHERE d.sent_at IS NOT NULL AND d.created_at >= :since AND t.slug = ANY(CAST(:slugs AS text[]))
GROUP BY t.slug, r.return_id, d.milestone, d.channel, r.id, d.tenant_id
""")
_READ = text("UPDATE inbox_items SET read_at = :at WHERE delivery_id = :d AND read_at IS NULL")


def switch_on(session: Session, slugs: Iterable[str]) -> None:
    """Tracking and the survey (completion and refund messages) on for these tenants,
    creating them if needed, audited as the demo."""
    from return_notify.access.audit import Actor
    from return_notify.storage.tenants import ensure_tenant_ids
    from return_notify.templating.link_settings import InsightsSettings, save_insights

    on = InsightsSettings(tracking=True, survey=True,
                          survey_milestones=("return_completed", "refund_processed"))
    for tid in ensure_tenant_ids(session, slugs).values():
        save_insights(session, tid, on, Actor(None, "demo"))


def play(session: Session, stream: Stream, since: datetime, slugs: Iterable[str],
         seed: int = 11, now: datetime | None = None) -> dict[str, int]:
    """Apply the customers' reactions to what was sent since ``since``; returns counts."""
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.engagement import REDIRECT, SENDGRID, Signal, record_signals
    from return_notify.pipeline.satisfaction import record_rating

    now = now or datetime.now(UTC)
    rows = session.execute(_UNITS, {"since": since, "slugs": sorted(set(slugs))}).all()
    units: dict[tuple[str, str, str, str], Any] = {
        (r.slug, r.return_id, r.milestone, r.channel): r for r in rows}
    counts = {"open": 0, "click": 0, "read": 0, "rate": 0}
    signals: list[Signal] = []
    window_h = get_settings().rating_change_window_h
    for x in reactions(units, stream, seed):
        unit = units[(x.tenant, x.return_id, x.milestone, x.channel)]
        at = min(unit.sent_at + timedelta(seconds=x.after_s), now)
        if x.kind in ("open", "click"):
            signals.append(Signal(unit.tenant_id, unit.return_pk, x.milestone, x.channel,
                                  x.kind, at, SENDGRID if x.channel == "email" else REDIRECT,
                                  unit.delivery_id))
        elif x.kind == "read":
            done = session.execute(_READ, {"at": at, "d": unit.delivery_id})
            counts["read"] += int(getattr(done, "rowcount", 0) or 0)
        elif x.kind == "rate" and x.score is not None:
            result = record_rating(session, unit.tenant_id, unit.return_pk, x.score,
                                   source="link", at=at, window_h=window_h, channel=x.channel,
                                   milestone=x.milestone)
            counts["rate"] += result.outcome == "recorded"
    for kind in ("open", "click"):
        counts[kind] = record_signals(session, [s for s in signals if s.kind == kind])
    return counts
