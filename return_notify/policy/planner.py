"""Where preferences, quiet hours and throttles meet the pipeline: per-tenant policy storage,
their settings, ``DeliveryPlanner`` (ingest: which channels, send now or hold until when)
and ``quiet_hours_holds`` (deliver: never send inside quiet hours, e.g. a retry at 21:05).

Everything a batch needs is loaded up front in a handful of queries (preferences of its
customers, policies of its tenants, recent deliveries of its returns); the decisions
themselves are the pure functions of ``preferences``, ``quiet_hours`` and ``throttle``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.config.settings import Settings, get_settings
from return_notify.events import ReturnEvent
from return_notify.policy.preferences import (
    Preferences,
    apply_preferences,
    db_key,
    effective_preferences,
    load_preferences,
)
from return_notify.policy.quiet_hours import (
    QuietHoursConfig,
    Window,
    next_allowed_all,
    recipient_zones,
    resolve,
)
from return_notify.policy.throttle import (
    SEND_NOW,
    History,
    Plan,
    ThrottleConfig,
    load_histories,
    plan,
    remember,
)


def default_quiet_hours(settings: Settings) -> QuietHoursConfig:
    """The quiet hours of a tenant that configured none (``RSN_QUIET_HOURS_*``)."""
    return _quiet_hours_config(settings.quiet_hours_allowed, settings.quiet_hours_channels,
                               settings.quiet_hours_enabled)


def default_throttle(settings: Settings) -> ThrottleConfig:
    """The throttle of a tenant that configured none (``RSN_THROTTLE_MIN_INTERVALS``,
    ``RSN_DIGEST_WINDOWS``)."""
    return _throttle_config(settings.throttle_min_intervals, settings.digest_windows)


@lru_cache(maxsize=16)
def _throttle_config(intervals: str, digests: str) -> ThrottleConfig:
    """Parsed once per value: it is asked for every event of every batch."""
    return ThrottleConfig.from_spec(intervals, digests)


@lru_cache(maxsize=16)
def _quiet_hours_config(allowed: Any, channels: str, enabled: bool) -> QuietHoursConfig:
    """Validated once per value: it is asked for every row of every batch."""
    chans = tuple(c.strip() for c in channels.split(",") if c.strip())
    return QuietHoursConfig(allowed=allowed, channels=chans, enabled=enabled)


# --------------------------------------------------------------------- storage ---------

@dataclass(frozen=True)
class TenantPolicy:
    quiet_hours: dict[str, QuietHoursConfig]  # by region, "*" = tenant default
    throttle: ThrottleConfig | None


_policy_cache: dict[tuple[str, int], tuple[float, TenantPolicy]] = {}


def forget_policies() -> None:
    _policy_cache.clear()


def get_quiet_hours(session: Session, tenant_id: int) -> dict[str, QuietHoursConfig]:
    out: dict[str, QuietHoursConfig] = {}
    for region, raw in session.execute(text(
            "SELECT region, config FROM quiet_hours_configs WHERE tenant_id = :t ORDER BY region"
    ), {"t": tenant_id}):
        try:
            out[region] = QuietHoursConfig.model_validate(raw)
        except ValidationError:
            continue  # written by a newer version or by hand: the default applies
    return out


def put_quiet_hours(session: Session, tenant_id: int, region: str, cfg: QuietHoursConfig) -> None:
    session.execute(text(
        "INSERT INTO quiet_hours_configs (tenant_id, region, config) "
        "VALUES (:t, :r, CAST(:c AS jsonb)) ON CONFLICT (tenant_id, region) "
        "DO UPDATE SET config = EXCLUDED.config, updated_at = now()"
    ), {"t": tenant_id, "r": region, "c": cfg.model_dump_json()})
    _policy_cache.pop((db_key(session), tenant_id), None)


def delete_quiet_hours(session: Session, tenant_id: int, region: str) -> bool:
    res = session.execute(text(
        "DELETE FROM quiet_hours_configs WHERE tenant_id = :t AND region = :r"
    ), {"t": tenant_id, "r": region})
    _policy_cache.pop((db_key(session), tenant_id), None)
    return bool(res.rowcount)  # type: ignore[attr-defined]


def get_throttle(session: Session, tenant_id: int) -> ThrottleConfig | None:
    raw = session.execute(text("SELECT config FROM throttle_configs WHERE tenant_id = :t"),
                          {"t": tenant_id}).scalar()
    try:
        return None if raw is None else ThrottleConfig.model_validate(raw)
    except ValidationError:
        return None


def put_throttle(session: Session, tenant_id: int, cfg: ThrottleConfig | None) -> None:
    """Store (or with None, remove) a tenant's throttle and digest overrides."""
    if cfg is None:
        session.execute(text("DELETE FROM throttle_configs WHERE tenant_id = :t"), {"t": tenant_id})
    else:
        session.execute(text(
            "INSERT INTO throttle_configs (tenant_id, config) VALUES (:t, CAST(:c AS jsonb)) "
            "ON CONFLICT (tenant_id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()"
        ), {"t": tenant_id, "c": cfg.model_dump_json()})
    _policy_cache.pop((db_key(session), tenant_id), None)


def load_policies(session: Session, tenant_ids: Iterable[int], ttl_s: float = 30.0
                  ) -> dict[int, TenantPolicy]:
    """Policies of a batch's tenants (two queries for the ones not cached)."""
    db, now = db_key(session), time.monotonic()
    out: dict[int, TenantPolicy] = {}
    missing: list[int] = []
    for tid in set(tenant_ids):
        hit = _policy_cache.get((db, tid))
        if hit is not None and hit[0] > now:
            out[tid] = hit[1]
        else:
            missing.append(tid)
    if missing:
        quiet: dict[int, dict[str, QuietHoursConfig]] = {t: {} for t in missing}
        throttles: dict[int, ThrottleConfig | None] = dict.fromkeys(missing)
        params = {"tids": missing}
        for tid, region, raw in session.execute(text(
                "SELECT tenant_id, region, config FROM quiet_hours_configs "
                "WHERE tenant_id = ANY(CAST(:tids AS int[]))"), params):
            try:
                quiet[tid][region] = QuietHoursConfig.model_validate(raw)
            except ValidationError:
                pass
        for tid, raw in session.execute(text(
                "SELECT tenant_id, config FROM throttle_configs "
                "WHERE tenant_id = ANY(CAST(:tids AS int[]))"), params):
            try:
                throttles[tid] = ThrottleConfig.model_validate(raw)
            except ValidationError:
                pass
        for tid in missing:
            out[tid] = TenantPolicy(quiet[tid], throttles[tid])
            if ttl_s > 0:
                _policy_cache[(db, tid)] = (now + ttl_s, out[tid])
    return out


def effective_throttle(policy: TenantPolicy, settings: Settings) -> ThrottleConfig:
    """The tenant's entries over the defaults (an entry of 0 switches a default off)."""
    base = default_throttle(settings)
    over = policy.throttle
    if over is None:
        return base
    return ThrottleConfig(min_interval_s={**base.min_interval_s, **over.min_interval_s},
                          digest_window_s={**base.digest_window_s, **over.digest_window_s})


def quiet_window(
    policy: TenantPolicy, settings: Settings, *, region: str | None, channel: str,
    milestone: str, timezone: str | None, phone: str | None,
) -> tuple[Window | None, tuple[str, ...]]:
    """The recipient's allowed window for this channel and milestone (None: not held) and
    the time zones it is read in."""
    if not settings.quiet_hours_enabled:
        return None, ()
    eff = resolve(policy.quiet_hours, region, default_quiet_hours(settings))
    if eff is None or not eff.applies(channel, milestone):
        return None, ()
    return eff.window, recipient_zones(timezone, phone, region, eff.default_timezone)


# --------------------------------------------------------------------- ingest ----------

@dataclass(frozen=True)
class Choice:
    """Channels of one event after preferences, and what the customer's prefs say."""

    channels: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (channel, reason)
    prefs: Preferences

    @property
    def locale(self) -> str | None:
        return self.prefs.locale


class DeliveryPlanner:
    """One ingest batch's view of preferences, policies and delivery history."""

    def __init__(self, prefs: dict[tuple[int, str], Preferences], policies: dict[int, TenantPolicy],
                 histories: dict[tuple[int, str], History], settings: Settings,
                 now: datetime) -> None:
        self.prefs, self.policies, self.histories = prefs, policies, histories
        self.settings, self.now = settings, now

    @classmethod
    def load(cls, session: Session, *, tenant_ids: Iterable[int],
             customers: Iterable[tuple[int, str]], return_pks: Iterable[int],
             now: datetime | None = None, settings: Settings | None = None,
             ) -> DeliveryPlanner:
        settings = settings or get_settings()
        now = now or datetime.now(UTC)
        policies = load_policies(session, tenant_ids, settings.policy_cache_s)
        prefs = load_preferences(session, customers, settings.preferences_cache_s)
        lookback = max([effective_throttle(p, settings).lookback_s() for p in policies.values()]
                       or [0.0])
        histories = load_histories(session, return_pks, lookback, now) if lookback > 0 else {}
        return cls(prefs, policies, dict(histories), settings, now)

    def choose(self, ev: ReturnEvent, tenant_id: int, channels: Iterable[str], *,
               override: bool = False) -> Choice:
        """Apply the customer's effective preferences to a rule's channels."""
        prefs = effective_preferences(
            self.prefs.get((tenant_id, ev.customer.id)), data=ev.data, locale=ev.customer.locale,
            timezone=ev.customer.timezone, event_id=ev.event_id)
        kept, skipped = apply_preferences(channels, prefs, ev.milestone, override)
        return Choice(kept, skipped, prefs)

    def plan(self, ev: ReturnEvent, tenant_id: int, return_pk: int, channel: str,
             choice: Choice) -> Plan:
        """Send now or hold (digest, throttle, quiet hours); remembers it for the batch."""
        policy = self.policies.get(tenant_id, TenantPolicy({}, None))
        window, zones = quiet_window(
            policy, self.settings, region=ev.region, channel=channel,
            milestone=ev.milestone.value, timezone=choice.prefs.timezone, phone=ev.customer.phone)
        history = self.histories.setdefault((return_pk, channel), History())
        p = plan(now=self.now, milestone=ev.milestone, channel=channel, history=history,
                 throttle=effective_throttle(policy, self.settings), quiet=window, zones=zones)
        remember(history, p, ev.milestone.value, self.now)
        return p


# --------------------------------------------------------------------- deliver ---------

def quiet_hours_holds(
    session: Session, channel: str, rows: Iterable[Any], now: datetime | None = None,
    settings: Settings | None = None,
) -> dict[int, datetime]:
    """``{delivery id: when}`` for claimed rows (``id``, ``tenant_id``, ``payload``,
    ``region``, ``milestone``) that would be sent inside the recipient's quiet hours."""
    settings = settings or get_settings()
    rows = list(rows)
    if not settings.quiet_hours_enabled or not rows:
        return {}
    at = (now or datetime.now(UTC)) + timedelta(seconds=1)  # claims run 0.5 s early
    policies = load_policies(session, {r.tenant_id for r in rows}, settings.policy_cache_s)
    keys = {r.id: (r.tenant_id, str((r.payload.get("customer") or {}).get("id", "")))
            for r in rows}
    stored = load_preferences(session, keys.values(), settings.preferences_cache_s)
    out: dict[int, datetime] = {}
    # one batch shares ``at``: the answer depends only on the window and the zones, which
    # most rows of a batch have in common
    memo: dict[tuple[Window, tuple[str, ...]], datetime | None] = {}
    for r in rows:
        customer = r.payload.get("customer") or {}
        prefs = effective_preferences(stored.get(keys[r.id]), data=r.payload.get("data"),
                                      locale=customer.get("locale"),
                                      timezone=customer.get("timezone"))
        window, zones = quiet_window(
            policies[r.tenant_id], settings, region=r.region, channel=channel,
            milestone=r.milestone, timezone=prefs.timezone, phone=customer.get("phone"))
        if window is not None:
            key = (window, tuple(zones))
            if key not in memo:
                memo[key] = next_allowed_all(at, zones, window)
            later = memo[key]
            if later is not None:
                out[r.id] = later
    return out


__all__ = ["SEND_NOW", "Choice", "DeliveryPlanner", "quiet_hours_holds"]
