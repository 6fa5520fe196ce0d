"""Realistic return-event streams for the demo, the benchmark and the tests.

Each return walks a plausible lifecycle (happy path, rejection, cancellation, carrier
exception, several ETA updates); the stream interleaves returns the way many backends
publishing at once would, and can add duplicates, out-of-order milestones and bad events.
"""

from __future__ import annotations

import random
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


@dataclass
class Stream:
    """Events in publish order, and what the generator knows about them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    returns: int = 0
    duplicates: int = 0  # extra copies of an already published event_id
    out_of_order: int = 0  # events published after a later milestone of their return
    invalid: int = 0  # events that break the contract on purpose

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


def make_stream(
    n_events: int = 2400, min_returns: int = 500, seed: int = 7, dup_rate: float = 0.03,
    ooo_rate: float = 0.04, invalid: int = 6,
    tenants: dict[str, tuple[str, str, str, str, str]] | None = None, prefix: str = "",
) -> Stream:
    """Build a stream of at least ``n_events`` events over at least ``min_returns`` returns."""
    rng = random.Random(seed)
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
        for j, m in enumerate(_path(rng)):
            evs.append({
                "event_id": f"{prefix}{slug}-{k}-{j}", "tenant": slug, "return_id": ref,
                "milestone": m, "customer": customer, "region": region,
                "product_category": category, "data": _data(m, rng, currency, ref),
                "source": "carrier:" + CARRIERS[k % 5] if m in ("in_transit", "exception")
                else rng.choice(["returns-portal", "wms", "erp"]),
            })
        per_return.append(evs)
        total += len(evs)

    stream = Stream(returns=len(per_return))
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
            at = now + timedelta(microseconds=i)
            prev = last.get(ev["return_id"])
            if events[i].get("_earlier_than_prev") and prev is not None:
                at = prev - timedelta(seconds=1)
            ev["occurred_at"] = at.isoformat()
            last[ev["return_id"]] = max(at, prev) if prev else at
            seen[ev["event_id"]] = ev["occurred_at"]
        out.append(ev)
    return out
