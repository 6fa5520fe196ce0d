"""Local servers that speak the real provider APIs (Twilio, SendGrid) for tests, demo, benchmarks.

This module holds their shared vocabulary: ``Fault`` (what to inject), ``FaultPlan`` (when),
``RecordedRequest`` (what a server received), ``Reply``, ``RateWindow`` and ``run_cli`` (the
``python -m`` entry point). The HTTP machinery is in ``control.py``; ``TwilioFakeServer``
and ``SendGridFakeServer`` are imported lazily so that
``python -m return_notify.channels.fakes.twilio_server`` runs without a double import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from return_notify.channels.fakes.control import FakeProviderServer
    from return_notify.channels.fakes.sendgrid_server import SendGridFakeServer
    from return_notify.channels.fakes.twilio_server import TwilioFakeServer

__all__ = [
    "Fault", "FaultKind", "FaultPlan", "RateWindow", "RecordedRequest", "Reply",
    "SendGridFakeServer", "TwilioFakeServer", "json_reply", "run_cli",
]

_LAZY = {
    "SendGridFakeServer": "return_notify.channels.fakes.sendgrid_server",
    "TwilioFakeServer": "return_notify.channels.fakes.twilio_server",
}


FaultKind = Literal["rate_limit", "server_error", "hang", "permanent", "drop"]


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    ``rate_limit``: 429 (``retry_after_s``); ``server_error``: ``status`` (default 500);
    ``hang``: answer normally after ``seconds`` (the client should time out first);
    ``permanent``: the provider's 4xx (``code``/``status``/``message``); ``drop``: close the
    connection without answering. ``headers`` are added to the reply.
    """

    kind: FaultKind
    status: int | None = None
    code: int | None = None
    message: str | None = None
    retry_after_s: float = 1.0
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    """What the server received. ``headers`` keys are lower-case; ``body`` is parsed."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    time: float
    status: int = 0  # what the server answered (0: dropped the connection)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["raw"] = self.raw.decode("utf-8", "replace")
        return data


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), dict(headers or {}))


class RateWindow:
    """A fixed one-second window: ``take()`` -> (allowed, limit, remaining, reset_epoch_s)."""

    def __init__(self, limit_per_s: int) -> None:
        self.limit = limit_per_s
        self._lock = threading.Lock()
        self._window = 0
        self._used = 0

    def take(self) -> tuple[bool, int, int, int]:
        now = time.time()
        with self._lock:
            window = int(now)
            if window != self._window:
                self._window, self._used = window, 0
            self._used += 1
            allowed = self._used <= self.limit
            return allowed, self.limit, max(0, self.limit - self._used), window + 1


class FaultPlan:
    """Thread-safe schedule of injected faults: a queue for the next calls, a rate, a latency."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._rate_fault = Fault("server_error")
        self._rng = random.Random(seed)
        self.latency_s = 0.0

    def fail_next(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._queue.extend([fault] * count)

    def set_rate(self, rate: float, fault: Fault) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("failure rate must be within 0..1")
        with self._lock:
            self._rate, self._rate_fault = rate, fault

    def next_fault(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._rate and self._rng.random() < self._rate:
                return self._rate_fault
            return None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate = 0.0
            self.latency_s = 0.0


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


def run_cli(
    factory: Callable[[argparse.Namespace], FakeProviderServer],
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; the first line printed is the base URL."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answering 500")
    parser.add_argument("--seed", type=int, default=None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = factory(args)
    if args.failure_rate:
        server.set_failure_rate(args.failure_rate)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(server.start(), flush=True)
    done.wait()
    server.stop()
    return 0
