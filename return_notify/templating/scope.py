"""Which of a tenant's template overrides renders a message part: locale, variant, scope.

An override is keyed by (channel, milestone, part, locale, **variant**, **region**,
**product category**). ``region``/``category`` ``None`` mean ANY and are normalised exactly
like rules (``rules.normalize_region`` / ``normalize_category``); ``variant`` ``None`` is the
default template, any other name is what a rule's ``template`` picks (``deliveries.template``).

**The order** (first override found wins), for one part of one delivery's message:

1. **locale**, outermost, along the customer's chain (``de-AT`` → ``de`` → tenant default
   → ``en``, see ``rendering``): for each locale an override is looked for, then the
   packaged template of that locale. So an override written only in English never replaces
   the packaged German text of a German customer.
2. **variant**: the delivery's template name first, then the default. A rule naming a
   variant that has no override for this part (or none at all) gets the default overrides,
   then the packaged templates.
3. **scope specificity**, ranked like rules: region + category > region > category > ANY;
   within a level the longer region first (``EU-DE`` before ``EU``). An override's region
   covers the event's region and its sub-regions by whole ``-`` segments
   (``rules.region_covers``: ``EU`` covers ``EU-DE``, not ``EUR``); its category must equal
   the event's. An event without a region (category) uses only region- (category-) ANY
   overrides.
4. **milestone**: the milestone's own override before the ``*`` (every milestone) one.

Example: an ``EU-DE`` ``apparel`` event whose rule names ``eu_formal``, customer ``de-AT``:
``de-AT`` [eu_formal: EU-DE+apparel, EU+apparel, EU-DE, EU, apparel, ANY; then default:
the same scopes], packaged ``de-AT``; then the same for ``de``, and so on.

Everything here is pure (no I/O); ``template_store`` loads the rows and caches them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from return_notify.core.regions import (
    event_category,
    event_region,
    normalize_category,
    normalize_region,
    region_covers,
)
from return_notify.rules.resolver import validate_template
from return_notify.storage.models import ANY_MILESTONE, DEFAULT_VARIANT

__all__ = ["ANY_SCOPE", "Slot", "TemplateScope", "TenantOverrides", "listing_filter",
           "normalize_variant", "scope_order", "variant_of"]

Slot = tuple[str, str, str, str, str | None, str | None, str | None]
"""An override's key: channel, milestone, part, locale, variant, region, category."""

_VIEW_MEMO_MAX = 4096


def normalize_variant(value: str | None) -> str | None:
    """A variant name as stored: ``None``, ``""`` or ``default`` → ``None`` (the default
    template); otherwise validated like a rule's ``template`` (``ValueError`` if invalid)."""
    if value is None or value.strip() in ("", DEFAULT_VARIANT):
        return None
    try:
        return validate_template(value.strip())
    except ValueError:
        raise ValueError(f"variant {value!r}: lowercase letters, digits, '_', '.', '-' (at most "
                         "64, e.g. 'eu_formal'); 'default' or nothing for the default") from None


def variant_of(template: str | None) -> str | None:
    """The variant a delivery renders with, from its rule's ``template`` (never raises)."""
    return None if template is None or template in ("", DEFAULT_VARIANT) else template


@dataclass(frozen=True)
class TemplateScope:
    """Where an override applies (``None`` = ANY) and which variant it belongs to."""

    region: str | None = None
    category: str | None = None
    variant: str | None = None

    @classmethod
    def parse(cls, region: str | None = None, category: str | None = None,
              variant: str | None = None) -> TemplateScope:
        """Normalised from user input (``*``/``any`` = ANY); raises ``ValueError``."""
        return cls(normalize_region(region), normalize_category(category),
                   normalize_variant(variant))

    @property
    def specificity(self) -> tuple[int, int]:
        """(level, region depth), as ``rules.RuleRecord.specificity``: bigger wins."""
        level = (2 if self.region else 0) + (1 if self.category else 0)
        return level, (self.region.count("-") + 1 if self.region else 0)

    def applies(self, region: str | None, category: str | None, variant: str | None) -> bool:
        """Does an override of this scope apply to a message for the (normalised) event
        ``region``/``category`` rendered with ``variant``?"""
        if self.variant is not None and self.variant != variant:
            return False
        if self.region is not None and (region is None or not region_covers(self.region, region)):
            return False
        return self.category is None or self.category == category

    def label(self) -> str:
        return (f"region {self.region or 'ANY'}, category {self.category or 'ANY'}, "
                f"variant {self.variant or DEFAULT_VARIANT}")


ANY_SCOPE = TemplateScope()


def _rank(scope: TemplateScope) -> tuple[bool, int, int]:
    level, depth = scope.specificity
    return scope.variant is None, -level, -depth


def scope_order(scopes: Iterable[TemplateScope], region: str | None, category: str | None,
                variant: str | None) -> tuple[TemplateScope, ...]:
    """The scopes among ``scopes`` that apply to an event's ``region``/``category`` (raw
    values) rendered with ``variant`` (a rule's template name), best first: the named
    variant before the default, then the most specific scope first. No two applicable
    scopes tie (one region of each depth covers a region; categories are exact)."""
    reg, cat, var = event_region(region), event_category(category), variant_of(variant)
    return tuple(sorted((s for s in set(scopes) if s.applies(reg, cat, var)), key=_rank))


class _Active:
    """A tenant's active override sources, shared by every view of them."""

    def __init__(self, sources: Mapping[tuple[Any, ...], str]) -> None:
        self.sources: dict[Slot, str] = {}
        for key, source in sources.items():
            slot = tuple(key) + (None,) * (7 - len(key))  # a 4-tuple: ANY scope, default
            self.sources[slot] = source  # type: ignore[index]
        self.channels: dict[TemplateScope, set[str]] = {}
        for ch, _m, _p, _l, var, reg, cat in self.sources:
            self.channels.setdefault(TemplateScope(reg, cat, var), set()).add(ch)
        self.views: dict[tuple[str | None, str | None, str | None], TenantOverrides] = {}


class TenantOverrides:
    """A tenant's active overrides as seen by messages of one scope and variant
    (``rendering.OverrideSource``). Built from all of them it is the ANY/default view;
    :meth:`scoped` gives the view of any other (memoised, sharing the sources)."""

    def __init__(self, sources: Mapping[tuple[Any, ...], str] | None = None) -> None:
        self._init(_Active(sources or {}), None, None, None)
        self._active.views[(None, None, None)] = self

    def _init(self, active: _Active, region: str | None, category: str | None,
              variant: str | None) -> None:
        self._active = active
        self._order = scope_order(active.channels, region, category, variant)
        self._channels = frozenset(ch for s in self._order for ch in active.channels[s])
        self._size = sum(1 for k in active.sources
                         if TemplateScope(k[5], k[6], k[4]) in self._order)

    def scoped(self, region: str | None = None, category: str | None = None,
               variant: str | None = None) -> TenantOverrides:
        """The view for an event's ``region``/``category`` and a rule's ``variant``."""
        key = (event_region(region), event_category(category), variant_of(variant))
        views = self._active.views
        view = views.get(key)
        if view is None:
            view = TenantOverrides.__new__(TenantOverrides)
            view._init(self._active, *key)
            if len(views) >= _VIEW_MEMO_MAX:
                views.clear()
            views[key] = view
        return view

    @property
    def order(self) -> tuple[TemplateScope, ...]:
        """The scopes this view looks in, best first."""
        return self._order

    def __len__(self) -> int:
        """How many overrides this view can use."""
        return self._size

    def covers(self, channel: str) -> bool:
        return channel in self._channels

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        """The best override for exactly this locale (variant, then scope, then milestone)."""
        sources = self._active.sources
        milestones = (milestone,) if milestone == ANY_MILESTONE else (milestone, ANY_MILESTONE)
        for s in self._order:
            for m in milestones:
                found = sources.get((channel, m, part, locale, s.variant, s.region, s.category))
                if found is not None:
                    return found
        return None


def listing_filter(region: str | None = None, category: str | None = None,
                   variant: str | None = None) -> Callable[[Any], bool]:
    """An exact filter on rows with ``region``/``category``/``variant`` attributes for
    listings: an argument ``None`` does not filter; ``*`` (region, category) or ``default``
    (variant) select ANY / the default only. Raises ``ValueError`` for a malformed value."""
    reg = normalize_region(region) if region is not None else None
    cat = normalize_category(category) if category is not None else None
    var = normalize_variant(variant) if variant is not None else None

    def keep(row: Any) -> bool:
        return ((region is None or row.region == reg)
                and (category is None or row.category == cat)
                and (variant is None or row.variant == var))

    return keep
