"""Quiet hours: when a recipient may be messaged, in their local time (pure, DST-safe).

A ``Window`` holds the *allowed* sending time per weekday (minutes from local midnight,
``[start, end)``). The default is 08:00–21:00 every day (the US federal TCPA window);
stricter US states are built in as legal floors per region (``US-FL``, ``US-TX``, ...),
and a tenant can configure its own window per region (``QuietHoursConfig``), which is
intersected with the legal floor unless it says ``enforce_legal: false``.

``next_allowed(now_utc, tz, window)`` answers "send now (None) or at what UTC instant".
Every comparison happens in UTC; a window edge that falls into a DST gap or fold resolves
to the *conservative* instant (a start as late as possible, an end as early as possible).
No I/O here: storage lives in ``throttle.py``/``api``; config rows are parsed by pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from return_notify.core.regions import region_chain, region_path
from return_notify.core.zones import is_zone

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DayWindow = tuple[int, int] | None  # allowed [start, end) in minutes; None: no sending that day
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$", re.ASCII)


def parse_span(text: str | None) -> DayWindow:
    """``"08:00-21:00"`` → ``(480, 1260)``; ``None``/``"closed"`` → None (no sending)."""
    if text is None or text.strip().lower() in ("", "closed", "none", "off"):
        return None
    parts = text.replace("–", "-").split("-")
    if len(parts) != 2:
        raise ValueError(f"{text!r}: use HH:MM-HH:MM, e.g. 08:00-21:00")
    start, end = (_minutes(p.strip()) for p in parts)
    if not start < end:
        raise ValueError(f"{text!r}: the start must be before the end (same day)")
    return start, end


def _minutes(hhmm: str) -> int:
    m = _HHMM.fullmatch(hhmm)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{hhmm!r} is not a time of day HH:MM (00:00-24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def format_span(span: DayWindow) -> str | None:
    if span is None:
        return None
    return "-".join(f"{v // 60:02d}:{v % 60:02d}" for v in span)


@dataclass(frozen=True)
class Window:
    """Allowed sending time per weekday, Monday first (``date.weekday()`` order)."""

    days: tuple[DayWindow, ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("a window has one entry per weekday")

    @classmethod
    def daily(cls, span: str) -> Window:
        return cls((parse_span(span),) * 7)

    def with_days(self, overrides: dict[str, str | None]) -> Window:
        days = list(self.days)
        for name, span in overrides.items():
            days[_day_index(name)] = parse_span(span)
        return Window(tuple(days))

    def intersect(self, other: Window) -> Window:
        out: list[DayWindow] = []
        for a, b in zip(self.days, other.days, strict=True):
            if a is None or b is None or max(a[0], b[0]) >= min(a[1], b[1]):
                out.append(None)
            else:
                out.append((max(a[0], b[0]), min(a[1], b[1])))
        return Window(tuple(out))

    def describe(self) -> dict[str, str | None]:
        return {name: format_span(span) for name, span in zip(DAY_NAMES, self.days, strict=True)}


def _day_index(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in DAY_NAMES:
        raise ValueError(f"{name!r} is not a weekday (mon..sun)")
    return DAY_NAMES.index(key)


DEFAULT_WINDOW = Window.daily("08:00-21:00")

#: Legal floors per region (research §5): the US federal window, then the stricter states.
LEGAL_WINDOWS: dict[str, Window] = {
    "US": DEFAULT_WINDOW,
    **{f"US-{s}": Window.daily("08:00-20:00") for s in ("FL", "OK", "MD", "MS", "NJ")},
    "US-CT": Window.daily("09:00-20:00"),
    "US-TX": Window.daily("09:00-21:00").with_days({"sun": "12:00-21:00"}),
    "US-RI": Window.daily("09:00-18:00").with_days({"sat": "10:00-17:00", "sun": "10:00-17:00"}),
}


def legal_window(region: str | None) -> Window | None:
    """The strictest built-in window that applies to ``region`` (state, else federal)."""
    for key in region_chain(region)[:-1]:
        if key in LEGAL_WINDOWS:
            return LEGAL_WINDOWS[key]
    return None


# --------------------------------------------------------------------- config model ----

class QuietHoursConfig(BaseModel):
    """A tenant's quiet-hours setting for one region (``*``: every region without its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: str = Field(default="08:00-21:00", description="Allowed sending time, local, HH:MM-HH:MM")
    days: dict[str, str | None] = Field(
        default_factory=dict,
        description="Per-weekday overrides, e.g. {\"sun\": \"12:00-21:00\", \"sat\": null}",
    )
    channels: tuple[str, ...] = Field(
        default=("sms", "inapp"), description="Channels held back during quiet hours")
    exempt_milestones: tuple[str, ...] = Field(
        default=(), description="Milestones sent at any hour (legal floors still apply "
        "unless enforce_legal is false)")
    enforce_legal: bool = Field(
        default=True, description="Intersect with the built-in legal window of the region")
    default_timezone: str | None = Field(
        default=None, description="When the recipient's time zone cannot be determined")
    enabled: bool = True

    @field_validator("allowed")
    @classmethod
    def _span(cls, v: str) -> str:
        if parse_span(v) is None:
            raise ValueError("allowed must be a time span; use enabled=false to switch off")
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name, span in v.items():
            parse_span(span)
            out[DAY_NAMES[_day_index(name)]] = span
        return out

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(set(v) - {"email", "sms", "inapp"})
        if bad:
            raise ValueError(f"unknown channel(s) {bad}: use email, sms, inapp")
        return v

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None and not valid_timezone(v):
            raise ValueError("must be an IANA time zone such as America/New_York")
        return v

    def window(self) -> Window:
        return Window.daily(self.allowed).with_days(self.days)


@dataclass(frozen=True)
class Effective:
    """What applies to one recipient: window, held channels, exemptions, fallback zone."""

    window: Window
    channels: frozenset[str]
    exempt_milestones: frozenset[str]
    default_timezone: str | None
    source: str  # which config: "tenant:US-FL", "tenant:*", "default"

    def applies(self, channel: str, milestone: str) -> bool:
        return channel in self.channels and milestone not in self.exempt_milestones


def resolve(
    configs: dict[str, QuietHoursConfig], region: str | None, default: QuietHoursConfig,
) -> Effective | None:
    """The effective quiet hours for ``region`` from a tenant's configs (keyed by region,
    ``*`` = tenant default), falling back to ``default``; None when switched off."""
    source, cfg = "default", default
    for key in region_chain(region):
        if key in configs:
            source, cfg = f"tenant:{key}", configs[key]
            break
    if not cfg.enabled:
        return None
    window = cfg.window()
    legal = legal_window(region) if cfg.enforce_legal else None
    if legal is not None:
        window = window.intersect(legal)
    return Effective(window, frozenset(cfg.channels), frozenset(cfg.exempt_milestones),
                     cfg.default_timezone, source)


# --------------------------------------------------------------------- the clock -------

def _instant(day: date, minute: int, tz: ZoneInfo, later: bool) -> datetime:
    """The UTC instant of local ``day`` + ``minute``. A wall time that happens twice (DST
    fold) resolves to the later (``later=True``) or earlier occurrence; one that never
    happens (DST gap) to the transition, the first instant the local clock reads past it."""
    if minute >= 1440:
        day, minute = day + timedelta(days=1), minute - 1440
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
    lo, hi = sorted((wall.replace(fold=0).astimezone(UTC), wall.replace(fold=1).astimezone(UTC)))
    if lo == hi:
        return lo
    if lo.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return hi if later else lo  # a fold: both instants are real
    step, t, after = timedelta(minutes=1), lo, hi.astimezone(tz).utcoffset()
    while t < hi and t.astimezone(tz).utcoffset() != after:
        t += step
    return t


def next_allowed(now_utc: datetime, tz: str | ZoneInfo, window: Window) -> datetime | None:
    """None when ``now_utc`` is inside the allowed window in ``tz``; else the UTC instant
    the next allowed period starts. Raises ValueError for a window that never allows."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    now = now_utc.astimezone(UTC)
    today = now.astimezone(zone).date()
    for offset in range(-1, 9):  # -1: a window of yesterday cannot reach today, but be safe
        day = today + timedelta(days=offset)
        span = window.days[day.weekday()]
        if span is None:
            continue
        start = _instant(day, span[0], zone, later=True)
        end = _instant(day, span[1], zone, later=False)
        if end <= start or now >= end:
            continue
        return None if now >= start else start
    raise ValueError("this quiet-hours window never allows sending")


def next_allowed_all(now_utc: datetime, zones: Iterable[str], window: Window) -> datetime | None:
    """Like ``next_allowed`` when the recipient may be in any of ``zones`` (an area code or a
    state spanning several): the first instant allowed in all of them, None = now."""
    zs = [ZoneInfo(z) for z in dict.fromkeys(zones)] or [ZoneInfo("UTC")]
    t = now_utc.astimezone(UTC)
    for _ in range(16):
        waits = [w for z in zs if (w := next_allowed(t, z, window)) is not None]
        if not waits:
            return None if t == now_utc.astimezone(UTC) else t
        t = max(waits)
    return t  # the zones' windows never overlap: the latest start found (conservative)


# --------------------------------------------------------------------- time zones ------

def valid_timezone(name: str) -> bool:
    return is_zone(name)


_E, _C, _M, _P = "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"
#: Where a US state's residents are when nothing more precise is known (all of its zones).
US_STATE_ZONES: dict[str, tuple[str, ...]] = {
    **{s: (_E,) for s in ("CT", "DE", "DC", "GA", "ME", "MD", "MA", "NH", "NJ", "NY", "NC",
                          "OH", "PA", "RI", "SC", "VT", "VA", "WV")},
    **{s: (_C,) for s in ("AL", "AR", "IL", "IA", "LA", "MN", "MS", "MO", "OK", "WI")},
    **{s: (_M,) for s in ("CO", "MT", "NM", "UT", "WY")},
    **{s: (_P,) for s in ("CA", "NV", "WA")},
    "AZ": ("America/Phoenix",), "HI": ("Pacific/Honolulu",), "AK": ("America/Anchorage",),
    "PR": ("America/Puerto_Rico",), "FL": (_E, _C), "IN": ("America/Indiana/Indianapolis", _C),
    "KY": (_E, _C), "MI": ("America/Detroit", _C), "TN": (_C, _E), "TX": (_C, _M),
    "KS": (_C, _M), "NE": (_C, _M), "ND": (_C, _M), "SD": (_C, _M), "ID": ("America/Boise", _P),
    "OR": (_P, "America/Boise"),
}
US_CONTINENTAL: tuple[str, ...] = (_E, _C, _M, _P)
_MAX_PHONE_ZONES = 4  # more than that: a non-geographic number (toll-free, mobile range)


@lru_cache(maxsize=8192)
def phone_zones(phone: str | None) -> tuple[str, ...]:
    """Time zones of a number's area code (``phonenumbers``, optional); () when unknown.
    Cached: parsing a number costs more than the rest of a quiet-hours check."""
    if not phone:
        return ()
    try:
        import phonenumbers
        from phonenumbers import timezone as pn_timezone
    except ImportError:  # optional dependency: fall back to the region
        return ()
    try:
        zones = pn_timezone.time_zones_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(z for z in zones if z != "Etc/Unknown" and valid_timezone(z))
    return zones if 0 < len(zones) <= _MAX_PHONE_ZONES else ()


def recipient_zones(
    timezone: str | None, phone: str | None, region: str | None, default_tz: str | None = None,
) -> tuple[str, ...]:
    """Where the recipient probably is: their time zone, else the phone's area code, else
    the region (a US state, or every continental US zone for ``US``), else ``default_tz``
    (else UTC). Several zones mean "must be allowed in all of them"."""
    if timezone and valid_timezone(timezone):
        return (timezone,)
    by_phone = phone_zones(phone)
    if by_phone:
        return by_phone
    norm = region_path(region)
    if norm and norm.startswith("US"):
        state = norm[3:] if norm.startswith("US-") else ""
        return US_STATE_ZONES.get(state, US_CONTINENTAL)
    return (default_tz,) if default_tz and valid_timezone(default_tz) else ("UTC",)
