"""Customer preferences: channels on/off (overall and per milestone), preferred channel,
locale, time zone and the engagement-tracking opt-out, per (tenant, customer id).

Three layers, most specific wins field by field (``effective_preferences``):

1. what the customer chose (stored here; API ``/v1/customers/{id}/preferences``, CLI);
2. the event's ``customer.locale`` / ``customer.timezone``;
3. defaults the producer sends in ``data.preferences`` (same shape as the API; the v1
   contract forbids unknown top-level and ``customer`` fields, but ``data`` is free-form,
   so this needs no schema change; a malformed object is ignored with a warning).

``apply_preferences`` is pure. A rule may mark a transactional milestone to override a
channel opt-out (``override_opt_out``, see ``rules``); that never touches the suppression
list (SMS STOP, email unsubscribe, bounces), which the deliver step checks before every
send, whatever ingest decided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.events import Milestone
from return_notify.rules.resolver import ResolvedRule
from return_notify.storage.db import database_key
from return_notify.storage.statements import Statement

log = logging.getLogger(__name__)

Channel = Literal["email", "sms", "inapp"]
DIRECT: tuple[str, ...] = ("email", "sms")  # channels that reach the customer outside the app

# skip reasons (``deliveries.skip_reason`` of rows ingest records as ``skipped``)
OPTED_OUT = "preference:opted_out"
OPTED_OUT_MILESTONE = "preference:opted_out_milestone"
PREFERRED_OTHER = "preference:preferred_channel"
#: reasons worth a ``skipped`` delivery row: it explains the silence and, being a row for
#: (event, channel), stops the SMS → email fallback from emailing someone who opted out.
RECORDED_REASONS = frozenset({OPTED_OUT, OPTED_OUT_MILESTONE})


class Preferences(BaseModel):
    """One customer's choices; every field optional (unset = no opinion)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[Channel, bool] = Field(
        default_factory=dict, description="Channel on/off for every milestone")
    milestones: dict[Milestone, dict[Channel, bool]] = Field(
        default_factory=dict,
        description="Per milestone and channel on/off; beats `channels` for that milestone")
    preferred_channel: Channel | None = Field(
        default=None, description="Of a milestone's email/SMS, use only this one (in-app stays)")
    locale: str | None = Field(default=None, description="BCP 47, e.g. de-AT")
    timezone: str | None = Field(default=None, description="IANA, e.g. Europe/Vienna")
    tracking: bool | None = Field(
        default=None, description="false: record no opens or clicks of this customer's "
        "messages, whatever the retailer's tracking switch says (unset: the switch decides)")

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        from return_notify.events import _check_locale

        return None if v is None else _check_locale(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        from return_notify.events import _check_timezone

        return None if v is None else _check_timezone(v)

    def is_empty(self) -> bool:
        return self == Preferences()

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


EMPTY = Preferences()


def merge(base: Preferences, over: Preferences | None) -> Preferences:
    """``over`` on top of ``base``, field by field (per channel, per milestone and channel)."""
    if over is None:
        return base
    milestones = {m: dict(v) for m, v in base.milestones.items()}
    for m, chans in over.milestones.items():
        milestones.setdefault(m, {}).update(chans)
    return Preferences(
        channels={**base.channels, **over.channels},
        milestones=milestones,
        preferred_channel=over.preferred_channel or base.preferred_channel,
        locale=over.locale or base.locale,
        timezone=over.timezone or base.timezone,
        tracking=over.tracking if over.tracking is not None else base.tracking,
    )


def event_defaults(data: Mapping[str, Any] | None, event_id: str | None = None) -> Preferences:
    """The producer's defaults from ``data.preferences``; ignored (logged) when malformed."""
    raw = (data or {}).get("preferences")
    if raw is None:
        return EMPTY
    try:
        return Preferences.model_validate(raw)
    except ValidationError as exc:
        log.warning("event %s: data.preferences ignored (%d error(s): %s)", event_id or "?",
                    exc.error_count(), exc.errors(include_url=False)[0]["msg"])
        return EMPTY


def effective_preferences(
    stored: Preferences | None, *, data: Mapping[str, Any] | None = None,
    locale: str | None = None, timezone: str | None = None, event_id: str | None = None,
) -> Preferences:
    """Stored choices over the event's customer locale/timezone over ``data.preferences``."""
    customer = _customer_defaults(locale, timezone)
    producer = event_defaults(data, event_id)
    defaults = customer if producer is EMPTY else merge(producer, customer)
    return merge(defaults, stored)


@lru_cache(maxsize=4096)
def _customer_defaults(locale: str | None, timezone: str | None) -> Preferences:
    """The event's customer locale and timezone as preferences: validated once per pair (a
    batch's customers share a handful of pairs; the model is frozen and nothing mutates
    its dicts, so the instance is shared)."""
    return Preferences(locale=locale, timezone=timezone)


def channel_enabled(prefs: Preferences, milestone: Milestone | str, channel: str) -> tuple[bool, str]:
    """Whether ``channel`` is on for ``milestone``, and the reason when it is off."""
    per = cast(dict[str, bool], prefs.milestones.get(Milestone(milestone), {})).get(channel)
    if per is not None:
        return per, OPTED_OUT_MILESTONE
    overall = cast(dict[str, bool], prefs.channels).get(channel)
    return (True, "") if overall is None else (overall, OPTED_OUT)


def apply_preferences(
    channels: Iterable[str], prefs: Preferences, milestone: Milestone | str,
    transactional_override: bool,
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Filter a rule's channels by a customer's preferences (pure).

    Returns ``(channels to use, ((channel, reason), ...) skipped)``. The most specific
    choice wins (milestone+channel, then channel). ``transactional_override`` (a rule's
    decision for a transactional milestone) keeps opted-out channels; it cannot beat the
    suppression list, which is not consulted here at all but at send time. A preferred
    channel among the milestone's email/SMS drops the other one; in-app always stays.
    Never adds a channel the rule did not give.
    """
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    for ch in channels:
        on, reason = channel_enabled(prefs, milestone, ch)
        if on or transactional_override:
            kept.append(ch)
        else:
            skipped.append((ch, reason))
    preferred = prefs.preferred_channel
    if preferred is not None and preferred in kept:
        for ch in [c for c in kept if c in DIRECT and c != preferred]:
            kept.remove(ch)
            skipped.append((ch, PREFERRED_OTHER))
    return tuple(kept), tuple(skipped)


def rule_overrides_opt_out(rule: ResolvedRule) -> bool:
    """Whether the rule that applies to an event overrides channel opt-outs: only a
    *transactional* rule marked ``override_opt_out`` (rules, admin API, CLI) does."""
    return rule.urgency == "transactional" and rule.override_opt_out


# --------------------------------------------------------------------- storage ---------

_LOAD = Statement("""
SELECT p.tenant_id, p.customer_id, p.preferences FROM customer_preferences p
JOIN unnest(CAST(:tids AS int[]), CAST(:cids AS text[])) AS k(tid, cid)
  ON p.tenant_id = k.tid AND p.customer_id = k.cid
""")
_UPSERT = text("""
INSERT INTO customer_preferences (tenant_id, customer_id, preferences)
VALUES (:tid, :cid, CAST(:prefs AS jsonb))
ON CONFLICT (tenant_id, customer_id)
DO UPDATE SET preferences = EXCLUDED.preferences, updated_at = now()
RETURNING updated_at
""")

Key = tuple[int, str]
_cache: dict[tuple[str, int, str], tuple[float, Preferences | None]] = {}
_CACHE_MAX = 100_000


def db_key(session: Session) -> str:
    """Which database a cache entry came from (tests recreate databases per module)."""
    return database_key(session)


def forget_preferences() -> None:
    """Drop the per-process cache (tests; a process that must see a change at once)."""
    _cache.clear()


def _parse_stored(raw: Any, key: Key) -> Preferences | None:
    try:
        return Preferences.model_validate(raw)
    except ValidationError:
        log.error("stored preferences of tenant %s customer #%s are invalid; ignored", key[0],
                  len(key[1]))
        return None


def load_preferences(
    session: Session, keys: Iterable[Key], ttl_s: float = 30.0,
) -> dict[Key, Preferences]:
    """Stored preferences of a batch of customers, in one query; kept ``ttl_s`` seconds per
    process (a change made through the API reaches workers within that time)."""
    db = db_key(session)
    now = time.monotonic()
    out: dict[Key, Preferences] = {}
    missing: list[Key] = []
    for key in dict.fromkeys(keys):
        hit = _cache.get((db, *key))
        if hit is not None and hit[0] > now:
            if hit[1] is not None:
                out[key] = hit[1]
        else:
            missing.append(key)
    if not missing:
        return out
    found: dict[Key, Preferences | None] = dict.fromkeys(missing)
    for tid, cid, raw in _LOAD.rows(session, {"tids": [k[0] for k in missing],
                                              "cids": [k[1] for k in missing]}):
        found[(tid, cid)] = _parse_stored(raw, (tid, cid))
    if len(_cache) > _CACHE_MAX:
        _cache.clear()
    for key, prefs in found.items():
        if ttl_s > 0:
            _cache[(db, *key)] = (now + ttl_s, prefs)
        if prefs is not None:
            out[key] = prefs
    return out


def get_preferences(session: Session, tenant_id: int, customer_id: str) -> Preferences | None:
    row = session.execute(text(
        "SELECT preferences FROM customer_preferences WHERE tenant_id = :t AND customer_id = :c"
    ), {"t": tenant_id, "c": customer_id}).first()
    return None if row is None else _parse_stored(row[0], (tenant_id, customer_id))


def put_preferences(session: Session, tenant_id: int, customer_id: str, prefs: Preferences) -> None:
    """Replace a customer's stored preferences (the caller commits)."""
    session.execute(_UPSERT, {"tid": tenant_id, "cid": customer_id,
                              "prefs": prefs.model_dump_json(exclude_none=True)})
    _cache.pop((db_key(session), tenant_id, customer_id), None)


def delete_preferences(session: Session, tenant_id: int, customer_id: str) -> bool:
    result = session.execute(text(
        "DELETE FROM customer_preferences WHERE tenant_id = :t AND customer_id = :c"
    ), {"t": tenant_id, "c": customer_id})
    _cache.pop((db_key(session), tenant_id, customer_id), None)
    return bool(result.rowcount)  # type: ignore[attr-defined]
