"""Notification rules: which channels, template and urgency an event gets (most specific rule wins).

A rule is ``(tenant, region or ANY, product category or ANY, milestone) → channels,
template, urgency, enabled, override_opt_out``; ``None`` stands for ANY.

**Matching.** A rule's region covers the event's region and every sub-region, by whole
``-``-separated segments: ``EU`` matches ``EU``, ``EU-DE``, ``EU-DE-BY``, never ``EUR``.
Categories match exactly. Both compare case-insensitively (regions are kept upper case,
categories lower case). An event without a region (category) matches only rules whose
region (category) is ANY.

**Specificity.** Of the rules matching an event's milestone, region and category:

1. level: region + category > region > category > tenant-wide (region and category ANY);
2. within a level, the longer region wins (``EU-DE`` beats ``EU``), so
   ``EU`` + ``apparel`` still beats ``EU-DE`` alone (level first);
3. ties cannot happen: there is one rule per (tenant, milestone, region, category) (a
   unique index); were it ever dropped, the lowest rule id would win.

No matching rule → the config default (``config/rules.py``). The winner decides alone,
without merging fields of less specific rules: if **enabled**, its channels, its urgency
(unset → the milestone's default urgency) and its template (unset → the default template);
if **disabled**, *no channel* for that scope, even where a less specific rule or the default
would notify (a mute). Delete the rule to fall back to less specific rules instead.

**Overriding an opt-out.** ``override_opt_out`` lets a rule whose effective urgency is
transactional (refund processed, exception, ...) reach a customer on a channel the customer
switched off in their preferences. It never beats the suppression list (SMS STOP, email
unsubscribe, bounces): that is checked at send time, whatever ingest decided. A rule that is
not transactional cannot carry it (``validate_override``).

``decide``/``explain_rules``/``RuleIndex`` are pure. ``resolve`` serves ingest from a
per-process cache (``CACHE_TTL_S``; ``prefetch`` loads a whole batch's tenants in one query;
changes made in this process invalidate it at once, other processes see them within the TTL).
``explain`` always reads the database.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from return_notify.config.rules import CHANNELS, DEFAULT_RULES
from return_notify.core.regions import (
    event_category,
    event_region,
    region_covers,
)
from return_notify.events import Milestone
from return_notify.storage.db import database_key

URGENCIES = ("transactional", "informational")
CACHE_TTL_S = 5.0
_MEMO_MAX = 4096

_TEMPLATE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


# ---------------------------------------------------------------- validation (pure) ------

def validate_channels(channels: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for ch in channels:
        ch = ch.strip().lower()
        if ch not in CHANNELS:
            raise ValueError(f"unknown channel {ch!r}: use {', '.join(CHANNELS)}")
        if ch not in out:
            out.append(ch)
    if not out:
        raise ValueError("a rule needs at least one channel; disable it to notify on none")
    return tuple(out)


def validate_urgency(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in URGENCIES:
        raise ValueError(f"urgency {value!r}: use {' or '.join(URGENCIES)} (or omit it)")
    return value


def validate_template(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _TEMPLATE.fullmatch(value):
        raise ValueError(f"template {value!r}: lowercase letters, digits, '_', '.', '-' "
                         "(at most 64, e.g. 'friendly' or 'holiday.v2')")
    return value


def effective_urgency(milestone: Milestone | str, urgency: str | None) -> str:
    """A rule's urgency, or the milestone's default urgency when the rule leaves it unset."""
    return urgency or DEFAULT_RULES[Milestone(milestone)].urgency


def validate_override(milestone: Milestone | str, urgency: str | None,
                      override_opt_out: bool) -> bool:
    """``override_opt_out`` checked against the rule's effective urgency (ValueError if not
    transactional: an informational message never overrides a customer's opt-out)."""
    if not isinstance(override_opt_out, bool):
        raise ValueError("override_opt_out: true or false")
    if override_opt_out:
        eff = effective_urgency(milestone, urgency)
        if eff != "transactional":
            why = (f"its urgency is {urgency}" if urgency else
                   f"{Milestone(milestone).value} is {eff} by default")
            raise ValueError(f"override_opt_out is only for transactional rules, and {why}: "
                             "set urgency to transactional, or turn override_opt_out off")
    return override_opt_out


# ---------------------------------------------------------------- decisions (pure) -------

@dataclass(frozen=True)
class RuleRecord:
    """A stored rule, as resolution sees it (``None`` region/category = ANY)."""

    id: int
    milestone: Milestone
    channels: tuple[str, ...]
    region: str | None = None
    category: str | None = None
    urgency: str | None = None
    template: str | None = None
    enabled: bool = True
    override_opt_out: bool = False

    @property
    def specificity(self) -> tuple[int, int]:
        """(level, region depth): bigger is more specific."""
        level = (2 if self.region else 0) + (1 if self.category else 0)
        return level, (self.region.count("-") + 1 if self.region else 0)

    @property
    def scope_label(self) -> str:
        parts = ["tenant"]
        if self.region:
            parts.append(f"region {self.region}")
        if self.category:
            parts.append(f"category {self.category}")
        return " + ".join(parts)

    def mismatch(self, region: str | None, category: str | None) -> str | None:
        """Why this rule does not apply to a (normalised) region and category, or None."""
        if self.region is not None:
            if region is None:
                return f"rule is for region {self.region}; the event has no region"
            if not region_covers(self.region, region):
                return f"region {self.region} does not cover {region}"
        if self.category is not None and category != self.category:
            got = category if category is not None else "no category"
            return f"rule is for category {self.category}; the event has {got}"
        return None


@dataclass(frozen=True)
class ResolvedRule:
    """What applies to an event: ``channels`` empty means notify on no channel.

    ``override_opt_out``: the channels go out even where the customer opted out of them
    (only ever true for a transactional rule; never beats the suppression list)."""

    channels: tuple[str, ...]
    urgency: str
    template: str | None
    rule_id: int | None
    reason: str
    override_opt_out: bool = False

    def reachable(self, has_email: bool, has_phone: bool) -> tuple[str, ...]:
        """The channels the customer can actually be reached on (in-app always)."""
        ok = {"email": has_email, "sms": has_phone, "inapp": True}
        return tuple(c for c in self.channels if ok.get(c, False))


Outcome = Literal["won", "lost", "not_applicable", "default_used", "default_unused"]


@dataclass(frozen=True)
class Candidate:
    """One rule considered by ``explain``: ``rule`` is None for the config default."""

    rule: RuleRecord | None
    outcome: Outcome
    why: str


@dataclass(frozen=True)
class Explanation:
    tenant_id: int
    region: str | None
    category: str | None
    milestone: Milestone
    result: ResolvedRule
    candidates: tuple[Candidate, ...]


def _sort_key(rule: RuleRecord) -> tuple[tuple[int, int], int]:
    return rule.specificity, -rule.id


def _resolved(winner: RuleRecord | None, milestone: Milestone) -> ResolvedRule:
    default = DEFAULT_RULES[milestone]
    if winner is None:
        return ResolvedRule(default.channels, default.urgency, None, None,
                            f"config default for {milestone.value} (no rule of the tenant matches)")
    urgency = winner.urgency or default.urgency
    if not winner.enabled:
        return ResolvedRule((), urgency, None, winner.id,
                            f"rule {winner.id} ({winner.scope_label}) is disabled: no notification")
    override = winner.override_opt_out and urgency == "transactional"
    return ResolvedRule(winner.channels, urgency, winner.template, winner.id,
                        f"rule {winner.id} ({winner.scope_label})"
                        + ("; overrides channel opt-outs" if override else ""), override)


def decide(rules: Iterable[RuleRecord], region: str | None, category: str | None,
           milestone: Milestone | str) -> ResolvedRule:
    """The rule for an event among ``rules`` (any tenant filtering already done).

    ``region``/``category`` are the event's raw values; they are normalised here.
    """
    m = Milestone(milestone)
    reg, cat = event_region(region), event_category(category)
    matching = [r for r in rules if r.milestone == m and r.mismatch(reg, cat) is None]
    return _resolved(max(matching, key=_sort_key, default=None), m)


def explain_rules(rules: Iterable[RuleRecord], region: str | None, category: str | None,
                  milestone: Milestone | str) -> tuple[ResolvedRule, list[Candidate]]:
    """``decide`` plus every rule of the milestone, the default last, each with why."""
    m = Milestone(milestone)
    reg, cat = event_region(region), event_category(category)
    same = sorted((r for r in rules if r.milestone == m), key=_sort_key, reverse=True)
    applicable = [r for r in same if r.mismatch(reg, cat) is None]
    winner = applicable[0] if applicable else None
    out: list[Candidate] = []
    for r in applicable:
        if r is winner:
            why = f"most specific matching rule ({r.scope_label})"
            if not r.enabled:
                why += "; disabled, so no channel is notified"
            out.append(Candidate(r, "won", why))
        else:
            assert winner is not None
            out.append(Candidate(r, "lost", f"matches, but less specific ({r.scope_label}) than "
                                            f"rule {winner.id} ({winner.scope_label})"))
    for r in same:
        why_not = r.mismatch(reg, cat)
        if why_not is not None:
            out.append(Candidate(r, "not_applicable", why_not))
    if winner is None:
        out.append(Candidate(None, "default_used", "no rule of the tenant matches: config default"))
    else:
        out.append(Candidate(None, "default_unused", f"not used: rule {winner.id} matches"))
    return _resolved(winner, m), out


class RuleIndex:
    """One tenant's rules keyed by scope: a lookup is a few dict probes, memoised."""

    def __init__(self, rules: Iterable[RuleRecord]) -> None:
        self._by_scope: dict[tuple[Milestone, str | None, str | None], RuleRecord] = {}
        for r in sorted(rules, key=lambda r: r.id, reverse=True):  # lowest id kept on a tie
            self._by_scope[(r.milestone, r.region, r.category)] = r
        self._memo: dict[tuple[str | None, str | None, str], ResolvedRule] = {}

    def __len__(self) -> int:
        return len(self._by_scope)

    def resolve(self, region: str | None, category: str | None,
                milestone: Milestone | str) -> ResolvedRule:
        key = (region, category, milestone)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        m = Milestone(milestone)
        if not self._by_scope:
            result = _resolved(None, m)
        else:
            reg, cat = event_region(region), event_category(category)
            regions: list[str | None] = [None]
            if reg is not None:
                segments = reg.split("-")
                regions += ["-".join(segments[:i]) for i in range(1, len(segments) + 1)]
            cats = (None, cat) if cat is not None else (None,)
            found = [r for rg in regions for c in cats
                     if (r := self._by_scope.get((m, rg, c))) is not None]
            result = _resolved(max(found, key=_sort_key, default=None), m)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[key] = result
        return result


# ---------------------------------------------------------------- database + cache -------

_lock = threading.Lock()
_cache: dict[tuple[Any, int], tuple[float, RuleIndex]] = {}


def record_from_row(row: Any) -> RuleRecord:
    """A ``NotificationRule`` row (or anything with its attributes) as a ``RuleRecord``."""
    return RuleRecord(id=row.id, milestone=Milestone(row.milestone), channels=tuple(row.channels),
                      region=row.region, category=row.product_category, urgency=row.urgency,
                      template=row.template, enabled=row.enabled,
                      override_opt_out=bool(row.override_opt_out))


def load_rules(session: Session, tenant_ids: Iterable[int],
               milestone: Milestone | None = None) -> dict[int, list[RuleRecord]]:
    """Every rule of these tenants (optionally one milestone), in one query."""
    from return_notify.storage.models import NotificationRule as R

    ids = sorted(set(tenant_ids))
    out: dict[int, list[RuleRecord]] = {tid: [] for tid in ids}
    if not ids:
        return out
    stmt = select(R.id, R.tenant_id, R.milestone, R.channels, R.region, R.product_category,
                  R.urgency, R.template, R.enabled, R.override_opt_out
                  ).where(R.tenant_id.in_(ids))
    if milestone is not None:
        stmt = stmt.where(R.milestone == milestone.value)
    for row in session.execute(stmt):
        out[row.tenant_id].append(record_from_row(row))
    return out


def _db_key(session: Session) -> Any:
    return database_key(session)  # tests run several databases in one process


def _load(session: Session, tenant_ids: set[int]) -> dict[int, RuleIndex]:
    db = _db_key(session)
    indexes = {tid: RuleIndex(rs) for tid, rs in load_rules(session, tenant_ids).items()}
    expires = time.monotonic() + CACHE_TTL_S
    with _lock:
        for tid, index in indexes.items():
            _cache[(db, tid)] = (expires, index)
    return indexes


def prefetch(session: Session, tenant_ids: Iterable[int]) -> None:
    """Load the rules of every tenant not cached (or expired) in one query."""
    db, now = _db_key(session), time.monotonic()
    stale = {t for t in tenant_ids if (hit := _cache.get((db, t))) is None or hit[0] <= now}
    if stale:
        _load(session, stale)


def resolve(session: Session, tenant_id: int, region: str | None, category: str | None,
            milestone: Milestone | str) -> ResolvedRule:
    """The rule that applies to an event; at most one query per tenant per ``CACHE_TTL_S``."""
    hit = _cache.get((_db_key(session), tenant_id))
    if hit is not None and hit[0] > time.monotonic():
        index = hit[1]
    else:
        index = _load(session, {tenant_id})[tenant_id]
    return index.resolve(region, category, milestone)


def invalidate(tenant_id: int | None = None) -> None:
    """Forget cached rules (of one tenant, or all): the next ``resolve`` reloads them."""
    with _lock:
        if tenant_id is None:
            _cache.clear()
        else:
            for key in [k for k in _cache if k[1] == tenant_id]:
                del _cache[key]


def explain(session: Session, tenant_id: int, region: str | None, category: str | None,
            milestone: Milestone | str) -> Explanation:
    """Which rule applies to such an event and why, read fresh from the database."""
    m = Milestone(milestone)
    rules = load_rules(session, (tenant_id,), m)[tenant_id]
    result, candidates = explain_rules(rules, region, category, m)
    return Explanation(tenant_id, event_region(region), event_category(category), m, result,
                       tuple(candidates))
