"""Engagement signals: the first open and the first click of a return's notification, per
milestone and channel, recorded only with consent; and where a tracked link leads.

**Consent** is checked when a signal arrives, not when the message was sent: the tenant's
``tracking`` switch must be on *now* and the customer must not have opted out (stored
preference ``tracking: false``, else the producer's ``data.preferences.tracking`` on the
return's latest event). So switching tracking off stops recording at once, also for links
in messages sent before; a signal without consent is dropped, never stored. A customer
erased on request (``customers erase``) is never tracked again.

**Once**: one row per (return, milestone, channel, kind), the first one; repeats (a customer
opening the same email five times, SendGrid's retries) change nothing. Signals carry no
personal data: ids, a channel, a milestone and a time.

**Destinations** of ``/r/{token}`` come from the return's stored event, never from the
request: the milestone's own link (label, carrier tracking page) when it is an ``https``
URL, else the return's status page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.policy.preferences import get_preferences
from return_notify.storage.models import SIGNAL_KINDS
from return_notify.templating.context import call_to_action, status_url
from return_notify.templating.i18n import DEFAULT_LANGUAGE, canonical_locale, language_of
from return_notify.templating.link_settings import get_insights
from return_notify.templating.links import (
    CLICK,
    RATING,
    STATUS,
    LinkKey,
    LinkTarget,
    MessageLinks,
    scored_urls,
    seal,
    status_path,
)

log = logging.getLogger(__name__)

SENDGRID, REDIRECT = "sendgrid", "redirect"
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class Signal:
    """One open or click, as a provider or our redirect reported it."""

    tenant_id: int
    return_pk: int
    milestone: str
    channel: str
    kind: str  # open | click
    at: datetime
    source: str  # sendgrid | redirect
    delivery_id: int | None = None


_CONSENTING = text("""
SELECT k.i FROM unnest(CAST(:tids AS int[]), CAST(:rpks AS bigint[])) WITH ORDINALITY
     AS k(tid, rpk, i)
JOIN tenant_insights ti ON ti.tenant_id = k.tid AND ti.tracking
JOIN returns r ON r.id = k.rpk AND r.tenant_id = k.tid AND r.customer_id IS NOT NULL
LEFT JOIN customer_preferences p ON p.tenant_id = k.tid AND p.customer_id = r.customer_id
LEFT JOIN LATERAL (
    SELECT e.payload -> 'data' -> 'preferences' ->> 'tracking' AS tracking FROM events e
    WHERE e.return_pk = k.rpk ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) last ON true
WHERE coalesce(p.preferences ->> 'tracking', last.tracking, 'true') NOT IN ('false', '0')
""")

_INSERT = text("""
INSERT INTO engagement_signals (tenant_id, return_pk, delivery_id, channel, milestone, kind,
                                source, at)
SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:rpks AS bigint[]), CAST(:dids AS bigint[]),
                     CAST(:chs AS text[]), CAST(:ms AS text[]), CAST(:kinds AS text[]),
                     CAST(:srcs AS text[]), CAST(:ats AS timestamptz[]))
ON CONFLICT ON CONSTRAINT uq_engagement_signals_once DO NOTHING
RETURNING id
""")


def consenting(session: Session, signals: Iterable[Signal]) -> list[Signal]:
    """The signals that may be recorded (tenant switch on, customer not opted out)."""
    items = list(signals)
    if not items:
        return []
    keep = {int(i) for i in session.execute(_CONSENTING, {
        "tids": [s.tenant_id for s in items], "rpks": [s.return_pk for s in items]}).scalars()}
    return [s for i, s in enumerate(items, start=1) if i in keep]


def record_signals(session: Session, signals: Iterable[Signal]) -> int:
    """Record the consenting first opens and clicks; returns how many rows are new."""
    items = [s for s in signals if s.kind in SIGNAL_KINDS]
    allowed = consenting(session, items)
    if not allowed:
        return 0
    first: dict[tuple[int, str, str, str], Signal] = {}
    for s in sorted(allowed, key=lambda s: s.at):  # the earliest of a batch wins
        first.setdefault((s.return_pk, s.milestone, s.channel, s.kind), s)
    rows = list(first.values())
    return len(session.execute(_INSERT, {
        "tids": [s.tenant_id for s in rows], "rpks": [s.return_pk for s in rows],
        "dids": [s.delivery_id for s in rows], "chs": [s.channel for s in rows],
        "ms": [s.milestone for s in rows], "kinds": [s.kind for s in rows],
        "srcs": [s.source for s in rows], "ats": [s.at for s in rows]}).all())


# ------------------------------------------------------------------ tracked links -------

@dataclass(frozen=True)
class ClickTarget:
    """Where a ``/r/`` link leads, and the return (None: unknown) its click counts for."""

    destination: str
    return_pk: int | None = None
    delivery_id: int | None = None


def safe_destination(url: Any) -> str | None:
    """``url`` if it is an absolute ``https`` URL without spaces or control characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        return None
    if any(c.isspace() or ord(c) < 32 or c in '"<>\\' for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return None
    return url


_RETURN = text("""
SELECT t.slug, r.id AS return_pk FROM tenants t
LEFT JOIN returns r ON r.tenant_id = t.id AND r.return_id = :rid
WHERE t.id = :tid
""")
_LATEST = text("""
SELECT payload -> 'data' AS data FROM events
WHERE return_pk = :rpk AND milestone = :m ORDER BY occurred_at DESC, id DESC LIMIT 1
""")
_DELIVERY = text("""
SELECT id FROM deliveries WHERE return_pk = :rpk AND milestone = :m AND channel = :ch
ORDER BY id DESC LIMIT 1
""")


def resolve_click(session: Session, target: LinkTarget, public_base_url: str,
                  key: LinkKey | None = None) -> ClickTarget | None:
    """Where a click on ``target`` goes; None when the tenant no longer exists. With the
    links' ``key``, the status page is the sealed ``/s/`` one."""
    row = session.execute(_RETURN, {"tid": target.tenant_id, "rid": target.return_id}).first()
    if row is None:
        return None
    if key is None:
        status = status_url(public_base_url, row.slug, target.return_id)
    else:
        status = public_base_url.rstrip("/") + status_path(seal(replace(target, kind=STATUS),
                                                                 key))
    if row.return_pk is None:  # erased or never known: the status page says so
        return ClickTarget(status)
    latest = session.execute(_LATEST, {"rpk": row.return_pk, "m": target.milestone}).first()
    data = latest.data if latest is not None and isinstance(latest.data, dict) else {}
    own = safe_destination(call_to_action(target.milestone, data))
    delivery = session.execute(_DELIVERY, {"rpk": row.return_pk, "m": target.milestone,
                                           "ch": target.channel}).scalar()
    return ClickTarget(own or status, int(row.return_pk),
                       int(delivery) if delivery is not None else None)


def record_click(session: Session, target: LinkTarget, click: ClickTarget, at: datetime) -> bool:
    """Record the click on a ``/r/`` link (first one only, with consent); True when new."""
    if click.return_pk is None:
        return False
    return record_signals(session, [Signal(
        target.tenant_id, click.return_pk, target.milestone, target.channel, CLICK, at,
        REDIRECT, click.delivery_id)]) > 0


# ------------------------------------------------------------------ the in-app inbox ----

_INBOX_LOCALES = text("""
SELECT i.id, d.locale FROM inbox_items i LEFT JOIN deliveries d ON d.id = i.delivery_id
WHERE i.id = ANY(CAST(:ids AS bigint[]))
""")


@dataclass(frozen=True)
class InboxLinks:
    """Rewrites a customer's inbox items as the app reads them: ``cta_url`` becomes a
    tracked link (tenant switch on, customer not opted out) and the survey milestones get
    ``rating_url`` and ``rating_urls`` (score → one-click link). Nothing is stored."""

    links: MessageLinks

    def apply(self, session: Session, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [int(i["id"]) for i in items if str(i.get("id", "")).isdigit()]
        locales = dict(session.execute(_INBOX_LOCALES, {"ids": ids}).tuples().all()) \
            if ids else {}
        return [self.item(i, locales.get(int(i["id"])) if str(i.get("id", "")).isdigit()
                          else None) for i in items]

    def item(self, item: dict[str, Any], locale: str | None = None) -> dict[str, Any]:
        out = {**item, "rating_url": None, "rating_urls": None}
        milestone, return_id = item.get("milestone"), item.get("return_id")
        if not isinstance(milestone, str) or not isinstance(return_id, str):
            return out
        language = language_of(canonical_locale(locale) or DEFAULT_LANGUAGE)
        if self.links.tracking and item.get("cta_url"):
            out["cta_url"] = self.links.url(LinkTarget(CLICK, self.links.tenant_id, return_id,
                                                       milestone, "inapp", language))
        if milestone in self.links.survey_milestones:
            rate = self.links.url(LinkTarget(RATING, self.links.tenant_id, return_id, milestone,
                                             "inapp", language))
            out["rating_url"] = rate
            out["rating_urls"] = {str(s): url for s, url in scored_urls(rate)}
        return out


def inbox_links(session: Session, tenant_id: int, customer_id: str, public_base_url: str,
                key: LinkKey | None) -> InboxLinks | None:
    """How this customer's inbox items are rewritten, or None (nothing to do)."""
    if key is None:
        return None
    switches = get_insights(session, tenant_id)
    prefs = get_preferences(session, tenant_id, customer_id)
    tracking = switches.tracking and not (prefs is not None and prefs.tracking is False)
    links = MessageLinks(tenant_id, public_base_url, key, tracking, switches.rated_milestones())
    return InboxLinks(links) if links.active else None
