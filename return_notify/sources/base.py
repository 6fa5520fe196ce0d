"""The shape every carrier adapter produces (``CarrierUpdate``) and helpers they share.

An adapter module (``easypost``, ``aftership``, ``shippo``) has ``NAME``, ``verify(body,
headers, query, secret) -> bool`` and ``parse(payload) -> CarrierUpdate | None`` (None: a
signed event that says nothing to the customer, e.g. a batch event or an unknown status).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from return_notify.events import Milestone

MAX_KEY_CHARS = 128


class CarrierPayloadError(ValueError):
    """A signed payload that does not have the fields the provider documents."""


@dataclass(frozen=True)
class CarrierUpdate:
    """One provider tracking update, normalised; ``key`` is the deterministic event id."""

    provider: str
    key: str
    tracking_number: str
    carrier: str | None
    status: str
    milestone: Milestone | None
    occurred_at: datetime
    eta: str | None = None
    reason: str | None = None
    tracking_url: str | None = None
    return_ref: str | None = None
    detail: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe, for ``unmatched_carrier_events.summary`` and ``from_summary``."""
        out = asdict(self)
        out["milestone"] = self.milestone.value if self.milestone else None
        out["occurred_at"] = self.occurred_at.isoformat()
        return out

    @classmethod
    def from_summary(cls, data: Mapping[str, Any]) -> CarrierUpdate:
        values = dict(data)
        values["milestone"] = Milestone(values["milestone"]) if values.get("milestone") else None
        values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
        return cls(**values)


class CarrierAdapter(Protocol):
    NAME: str

    def verify(self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str],
               secret: str) -> bool: ...

    def parse(self, payload: Any) -> CarrierUpdate | None: ...


_TN_STRIP = re.compile(r"[\s-]+")


def normalize_tracking_number(value: str) -> str:
    """``"1z 999-aa1"`` → ``"1Z999AA1"``: carriers print numbers with spaces and dashes."""
    return _TN_STRIP.sub("", value).upper()[:64]


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string (``Z`` allowed) or epoch seconds; else None.

    Naive timestamps are refused (None): guessing an offset would misorder events.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def eta_text(value: Any) -> str | None:
    """An ETA as the templates want it: ISO date (``2026-12-02``) or datetime string."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        try:
            return date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            return None


def reason_code(*candidates: Any) -> str | None:
    """The first usable reason, as a snake_case code (``"Returned to sender"`` → ``returned_to_sender``)."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            code = re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")
            if code:
                return code[:64]
    return None


def event_key(provider: str, shipment: str, milestone: Milestone | None, status: str,
              eta: str | None, reason: str | None) -> str:
    """The deterministic event id of an update.

    Provider retries of one update give the same key (dedupe), and so do scans that change
    nothing the customer is told: ``in_transit`` is keyed by its ETA (a new ETA is a new
    notification, another scan with the same ETA is not), ``exception`` by its reason, the
    other milestones by the milestone alone (one ``warehouse_received`` per parcel).
    """
    if milestone is Milestone.IN_TRANSIT:
        tail = (eta or "no-eta")[:10]
    elif milestone is Milestone.EXCEPTION:
        tail = reason or status
    elif milestone is None:
        tail = status
    else:
        tail = ""
    key = f"{provider}:{shipment}:{milestone.value if milestone else 'none'}"
    key = f"{key}:{tail}" if tail else key
    if len(key) > MAX_KEY_CHARS:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        key = f"{provider}:{digest}"
    return key


def get_path(obj: Any, *keys: str) -> Any:
    """``get_path(d, "a", "b")`` → ``d["a"]["b"]`` or None when any step is missing."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def text_or_none(value: Any, limit: int = 200) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text[:limit] if text else None
