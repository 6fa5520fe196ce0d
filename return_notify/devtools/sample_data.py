"""Realistic return-event streams for the demo, the benchmark and the tests, and what their
customers do with the messages.

Each return walks a plausible lifecycle (happy path, rejection, cancellation, carrier
exception, several ETA updates); the stream interleaves returns the way many backends
publishing at once would, and can add duplicates, out-of-order milestones and bad events.

With ``timeliness=True`` each return also gets a *source lag profile* (its events reach us
seconds, minutes, hours or days after they happened, as from a live portal, a polled WMS, a
nightly ERP export or a slow carrier feed) and :func:`reactions` plays its customer: opens,
clicks and in-app reads with built-in channel preferences per milestone, and a satisfaction
score whose distribution falls with the return's lag (the effect the insights must find).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TENANTS = {
    "acme-outfitters": ("US", "en-US", "America/New_York", "USD", "apparel"),
    "nordhaus": ("EU-DE", "de-DE", "Europe/Berlin", "EUR", "home"),
    "maison-claire": ("EU-FR", "fr-FR", "Europe/Paris", "EUR", "beauty"),
    "tienda-sol": ("EU-ES", "es-ES", "Europe/Madrid", "EUR", "electronics"),
}
TenantProfile = tuple[str, str, str, str, str]  # region, locale, timezone, currency, category
CARRIERS = ("ups", "dhl", "fedex", "usps", "colissimo")
NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Elif", "Farah", "Gustav", "Hana", None)
HAPPY = ["return_initiated", "return_approved", "label_created", "shipment_dispatched",
         "in_transit", "warehouse_received", "inspection_completed", "restocked",
         "refund_processed", "return_completed"]


#: source lag profiles: (name, share of returns, lag range in seconds)
LAG_PROFILES: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("seconds", 0.35, (1.0, 20.0)), ("minutes", 0.25, (180.0, 3000.0)),
    ("hours", 0.22, (5400.0, 72000.0)), ("days", 0.18, (93600.0, 259200.0)))
#: score distribution (1..5) per lag profile: the built-in effect of timeliness
SCORE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "seconds": (0.02, 0.03, 0.08, 0.30, 0.57), "minutes": (0.04, 0.06, 0.14, 0.36, 0.40),
    "hours": (0.10, 0.14, 0.26, 0.30, 0.20), "days": (0.22, 0.24, 0.26, 0.18, 0.10)}


@dataclass
class Stream:
    """Events in publish order, and what the generator knows about them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    returns: int = 0
    duplicates: int = 0  # extra copies of an already published event_id
    out_of_order: int = 0  # events published after a later milestone of their return
    invalid: int = 0  # events that break the contract on purpose
    #: return_id → source lag profile (``timeliness=True`` only)
    lag_profile: dict[str, str] = field(default_factory=dict)
    #: (tenant, return_id) → score its customer gives (``timeliness=True``, completed only)
    scores: dict[tuple[str, str], int] = field(default_factory=dict)
    #: of those, the ones the retailer's survey sends on the completion event
    #: (``data.satisfaction``); the rest the customer gives through the rating link
    surveyed: set[tuple[str, str]] = field(default_factory=set)

    @property
    def unique_valid(self) -> int:
        return len(self.events) - self.duplicates - self.invalid


def _path(rng: random.Random) -> list[str]:
    roll = rng.random()
    if roll < 0.06:
        return ["return_initiated", "return_rejected"]
    if roll < 0.11:
        return ["return_initiated", "return_approved", "return_cancelled"]
    path = list(HAPPY)
    extra = rng.randint(0, 2)  # ETA updates
    i = path.index("in_transit")
    path[i + 1 : i + 1] = ["in_transit"] * extra
    if roll < 0.2:
        path.insert(i + 1, "exception")
    cut = rng.random()
    if cut < 0.25:  # many returns are mid-flight when the burst happens
        path = path[: rng.randint(3, len(path))]
    return path


def _data(milestone: str, rng: random.Random, currency: str, ref: str) -> dict[str, Any]:
    carrier = rng.choice(CARRIERS)
    tracking = f"1Z{rng.randrange(10**9, 10**10)}"
    eta = (datetime.now(UTC) + timedelta(days=rng.randint(1, 6))).date().isoformat()
    if milestone == "label_created":
        return {"carrier": carrier, "label_url": f"https://labels.example.com/{ref}.pdf",
                "tracking_number": tracking, "drop_off_by": eta}
    if milestone in ("shipment_dispatched", "in_transit"):
        return {"carrier": carrier, "tracking_number": tracking, "eta": eta,
                "tracking_url": f"https://track.example.com/{carrier}/{tracking}"}
    if milestone == "inspection_completed":
        return {"inspection_outcome": rng.choice(["accepted", "accepted", "partial"])}
    if milestone == "refund_processed":
        return {"refund_amount": f"{rng.randint(900, 25000) / 100:.2f}", "currency": currency,
                "refund_method": rng.choice(["original_payment", "store_credit"])}
    if milestone == "return_rejected":
        return {"reason": "Item is outside the 30-day return window"}
    if milestone == "exception":
        return {"reason": rng.choice(["Parcel delayed at carrier hub", "Label expired"]),
                "carrier": carrier}
    return {}


def _profile(rng: random.Random) -> tuple[str, float]:
    roll, acc = rng.random(), 0.0
    for name, share, (low, high) in LAG_PROFILES:
        acc += share
        if roll < acc:
            return name, rng.uniform(low, high)
    name, _, (low, high) = LAG_PROFILES[-1]
    return name, rng.uniform(low, high)


def make_stream(
    n_events: int = 2400, min_returns: int = 500, seed: int = 7, dup_rate: float = 0.03,
    ooo_rate: float = 0.04, invalid: int = 6,
    tenants: dict[str, tuple[str, str, str, str, str]] | None = None, prefix: str = "",
    timeliness: bool = False, response_rate: float = 0.5, survey_share: float = 0.3,
) -> Stream:
    """Build a stream of at least ``n_events`` events over at least ``min_returns`` returns.

    ``timeliness``: give every return a source lag profile and every completed return a
    score (given by ``response_rate`` of customers; ``survey_share`` of the scores come as
    the retailer's ``data.satisfaction`` on the completion event)."""
    rng = random.Random(seed)
    rate_rng = random.Random(seed + 1)  # scores: without changing the events' randomness
    lags: dict[str, tuple[str, float]] = {}
    scores: dict[tuple[str, str], int] = {}
    surveyed: set[tuple[str, str]] = set()
    tenants = tenants or dict(TENANTS)
    per_return: list[list[dict[str, Any]]] = []
    total = 0
    while total < n_events or len(per_return) < min_returns:
        k = len(per_return)
        slug = list(tenants)[k % len(tenants)]
        region, locale, tz, currency, category = tenants[slug]
        ref = f"{prefix}RMA-{100000 + k}"
        customer: dict[str, Any] = {"id": f"cust-{k}", "locale": locale, "timezone": tz}
        name = rng.choice(NAMES)
        if name:
            customer["name"] = name
        if rng.random() < 0.9:
            customer["email"] = f"customer{k}@example.com"
        if rng.random() < 0.6:
            customer["phone"] = f"+1555{k % 10_000_000:07d}"
        evs: list[dict[str, Any]] = []
        path = _path(rng)
        if timeliness:
            lags[ref] = _profile(rate_rng)
            if path[-1] == "return_completed" and rate_rng.random() < response_rate:
                weights = SCORE_WEIGHTS[lags[ref][0]]
                scores[(slug, ref)] = rate_rng.choices((1, 2, 3, 4, 5), weights)[0]
        for j, m in enumerate(path):
            evs.append({
                "event_id": f"{prefix}{slug}-{k}-{j}", "tenant": slug, "return_id": ref,
                "milestone": m, "customer": customer, "region": region,
                "product_category": category, "data": _data(m, rng, currency, ref),
                "source": "carrier:" + CARRIERS[k % 5] if m in ("in_transit", "exception")
                else rng.choice(["returns-portal", "wms", "erp"]),
            })
        if timeliness:
            for ev in evs:
                ev["_lag_s"] = lags[ref][1] * rate_rng.uniform(0.8, 1.2)
            if (slug, ref) in scores and rate_rng.random() < survey_share:
                evs[-1]["data"] = {**evs[-1]["data"], "satisfaction": scores[(slug, ref)]}
                surveyed.add((slug, ref))
        per_return.append(evs)
        total += len(evs)

    stream = Stream(returns=len(per_return), lag_profile={r: p for r, (p, _) in lags.items()},
                    scores=scores, surveyed=surveyed)
    ooo = set()
    for evs in per_return:
        if len(evs) > 3 and rng.random() < ooo_rate * 4:
            i = rng.randrange(1, len(evs) - 1)
            evs[i], evs[i + 1] = evs[i + 1], evs[i]
            evs[i + 1]["_earlier_than_prev"] = True
            ooo.add(evs[i + 1]["event_id"])
    depth = max(len(e) for e in per_return)
    for wave in range(depth):
        batch = [evs[wave] for evs in per_return if wave < len(evs)]
        rng.shuffle(batch)
        stream.events.extend(batch)
    stream.out_of_order = len(ooo)
    for _ in range(int(len(stream.events) * dup_rate)):
        pos = rng.randrange(len(stream.events) // 2, len(stream.events))
        stream.events.insert(pos, stream.events[rng.randrange(pos)])
        stream.duplicates += 1
    for i in range(invalid):
        bad = dict(stream.events[i])
        bad["event_id"] = f"{prefix}bad-{i}"
        if i % 3 == 0:
            bad["shipment_weight"] = "2kg"  # unknown field
        elif i % 3 == 1:
            bad["milestone"] = "teleported"
        else:
            bad["customer"] = {"id": bad["customer"]["id"], "phone": "555-0100"}
        stream.events.insert(rng.randrange(len(stream.events)), bad)
        stream.invalid += 1
    return stream


def stamp(events: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """Give events ``occurred_at`` just before publishing, keeping each return's order.

    An out-of-order event gets a time one second before the event published ahead of it.
    An event with a source lag (``timeliness``) happened that long before publishing.
    """
    now = now or datetime.now(UTC)
    last: dict[str, datetime] = {}
    seen: dict[str, str] = {}
    out = []
    for i, ev in enumerate(events):
        ev = {k: v for k, v in ev.items() if not k.startswith("_")}
        if ev.get("event_id") in seen:
            ev["occurred_at"] = seen[ev["event_id"]]
        elif "occurred_at" not in ev:
            at = now + timedelta(microseconds=i) - timedelta(seconds=events[i].get("_lag_s", 0))
            prev = last.get(ev["return_id"])
            if events[i].get("_earlier_than_prev") and prev is not None:
                at = prev - timedelta(seconds=1)
            elif prev is not None and at <= prev:  # lags differ a little per event
                at = prev + timedelta(microseconds=1)
            ev["occurred_at"] = at.isoformat()
            last[ev["return_id"]] = max(at, prev) if prev else at
            seen[ev["event_id"]] = ev["occurred_at"]
        out.append(ev)
    return out


# ------------------------------------------------------------------ the customers -------

#: click probability per milestone and channel: the built-in channel preferences
CLICK_RATES: dict[str, dict[str, float]] = {
    "label_created": {"sms": 0.55, "email": 0.35, "inapp": 0.20},
    "shipment_dispatched": {"sms": 0.40, "email": 0.16, "inapp": 0.28},
    "in_transit": {"sms": 0.42, "email": 0.15, "inapp": 0.30},
    "exception": {"sms": 0.50, "email": 0.30, "inapp": 0.25},
    "refund_processed": {"email": 0.34, "sms": 0.12, "inapp": 0.10},
}
DEFAULT_CLICK_RATES = {"email": 0.12, "sms": 0.10, "inapp": 0.08}
OPEN_RATE = 0.62  # email: opened (a click implies an open)
READ_RATE = 0.55  # in-app: read


@dataclass(frozen=True)
class Reaction:
    """One thing a customer does with a notification, ``after_s`` after it was sent:
    ``open``, ``click``, ``read`` (in-app) or ``rate`` (with ``score``)."""

    tenant: str
    return_id: str
    milestone: str
    channel: str
    kind: str
    after_s: float
    score: int | None = None


def reactions(sent: Iterable[tuple[str, str, str, str]], stream: Stream, seed: int = 11
              ) -> list[Reaction]:
    """What the customers of ``stream`` do with the notifications ``sent``, as
    ``(tenant, return_id, milestone, channel)``: opens, clicks and reads per
    ``CLICK_RATES``/``OPEN_RATE``/``READ_RATE``, and the score of every customer of
    ``stream.scores`` the retailer's survey did not already send, through the rating link
    of their completion email (else in-app). Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    out: list[Reaction] = []
    units = sorted(set(sent))
    for tenant, rid, milestone, channel in units:
        p_click = CLICK_RATES.get(milestone, DEFAULT_CLICK_RATES).get(
            channel, DEFAULT_CLICK_RATES[channel])
        clicked = rng.random() < p_click
        seen = rng.random() < (OPEN_RATE if channel == "email" else READ_RATE)
        delay = rng.uniform(20.0, 900.0)
        if channel == "email" and (seen or clicked):
            out.append(Reaction(tenant, rid, milestone, channel, "open", delay))
        if channel == "inapp" and (seen or clicked):
            out.append(Reaction(tenant, rid, milestone, channel, "read", delay))
        if clicked:
            out.append(Reaction(tenant, rid, milestone, channel, "click", delay + 5.0))
    unit_set = set(units)
    completed = {(t, r) for t, r, m, _ in units if m == "return_completed"}
    for (tenant, rid), score in sorted(stream.scores.items()):
        if (tenant, rid) in stream.surveyed or (tenant, rid) not in completed:
            continue  # the retailer's survey sent it, or the final message never went out
        channel = "email" if (tenant, rid, "return_completed", "email") in unit_set else "inapp"
        out.append(Reaction(tenant, rid, "return_completed", channel, "rate",
                            rng.uniform(60.0, 1800.0), score))
    return out
