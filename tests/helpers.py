"""Small builders shared by the tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: the repository's root (``pyproject.toml``, ``docker-compose.yml``, ``deploy/``), wherever
#: a test module sits below ``tests/``
REPO_ROOT = Path(__file__).resolve().parents[1]


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def event(
    milestone: str = "return_initiated", *, tenant: str = "acme", return_id: str | None = None,
    event_id: str | None = None, at: datetime | None = None, email: str | None = "ana@example.com",
    phone: str | None = "+14155550123", data: dict[str, Any] | None = None, **extra: Any,
) -> dict[str, Any]:
    customer: dict[str, Any] = {"id": "cust-1", "name": "Ana", "locale": "en-US"}
    if email:
        customer["email"] = email
    if phone:
        customer["phone"] = phone
    ev = {
        "event_id": event_id or uid("ev-"), "tenant": tenant,
        "return_id": return_id or uid("RMA-"), "milestone": milestone,
        "occurred_at": (at or datetime.now(UTC)).isoformat(), "customer": customer,
        "region": "US", "product_category": "apparel", "data": data or {}, "source": "test",
    }
    ev.update(extra)
    return ev


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def wait_until(check: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def zone_at(hour: int, *, for_s: float = 20.0) -> str:
    """A fixed-offset IANA zone where it is ``hour`` o'clock now and stays so for at least
    ``for_s`` seconds. Within ``for_s`` of the next hour (as at the start of the faketime run,
    23:59:30), it first waits for the hour to turn: a test must not see its customer's local
    hour change between its events and its assertions."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < for_s:
        time.sleep(left + 0.2)
        now = datetime.now(UTC)
    x = (now.hour - hour) % 24
    x = x - 24 if x > 12 else x
    return f"Etc/GMT+{x}" if x >= 0 else f"Etc/GMT{x}"  # Etc/GMT+5 is UTC-5
