"""Builders of the hostile-input suite: the running stack's handle, a client that counts and
measures every request, the figures the suite reports, and Hypothesis strategies of hostile
events.

The stack itself (a real API server, a real worker and the stream listener, as subprocesses
on the session's database and Redis prefix) is the ``hostile_stack`` fixture of
``tests/integration/conftest.py``. Every test of the suite sends its requests through
:class:`LiveClient`, so the figures (requests tried, 5xx answered, peak API memory, the
longest request's CPU) cover all of them; they are written to ``hostile-figures.json`` in
the session's temporary directory (or ``$RSN_HOSTILE_FIGURES``) and printed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from hypothesis import strategies as st
from sqlalchemy import text

from return_notify.devtools.processes import Proc

PUBLIC_BASE_URL = "https://notify.example.com"
TWILIO_TOKEN = "twilio-hostile-auth-token"
INBOX_MASTER = "inbox-master-hostile"
UNSUBSCRIBE_SECRET = "unsubscribe-hostile-secret"
CRASH_MARKS = ("WorkerLostError", "Unrecoverable error", "raised unexpected",
               "Process 'ForkPoolWorker")


@dataclass
class Figures:
    """What the suite reports (the issue's "done when")."""

    requests: int = 0
    server_errors: int = 0
    server_error_samples: list[str] = field(default_factory=list)
    events_tried: int = 0
    events_accepted: int = 0
    events_lost: int = 0
    worker_crashes: int = 0
    template_bombs: int = 0
    api_rss_start_mb: float = 0.0
    api_rss_peak_mb: float = 0.0
    sandbox_rss_peak_mb: float = 0.0
    sandbox_cpu_peak_s: float = 0.0
    longest_request_cpu_s: float = 0.0
    longest_request: str = ""
    cases: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.cases[what] = self.cases.get(what, 0) + n

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


FIGURES = Figures()


class RssSampler:
    """Samples the API process's resident memory (and its sandbox children's) every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        FIGURES.api_rss_start_mb = self.proc.memory_info().rss / 2**20

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                rss = self.proc.memory_info().rss / 2**20
                FIGURES.api_rss_peak_mb = max(FIGURES.api_rss_peak_mb, rss)
                # the sandbox processes: children of the fork server, a child of the API
                for server in self.proc.children():
                    for child in server.children():
                        FIGURES.sandbox_rss_peak_mb = max(FIGURES.sandbox_rss_peak_mb,
                                                          child.memory_info().rss / 2**20)
                        cpu = child.cpu_times()
                        FIGURES.sandbox_cpu_peak_s = max(FIGURES.sandbox_cpu_peak_s,
                                                         cpu.user + cpu.system)
            except psutil.Error:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


@dataclass
class HostileStack:
    """The running stack: an API server, a worker (every queue) and the stream listener."""

    base_url: str
    env: dict[str, str]
    api: Proc
    worker: Proc
    listener: Proc
    sendgrid_key: Any  # the private key whose public half the API verifies with
    sampler: RssSampler | None = None

    def client(self) -> LiveClient:
        return LiveClient(self)

    def worker_crashes(self) -> int:
        """Crashes of the worker since it started: exited, lost pool processes, or tasks that
        raised instead of isolating their failure."""
        log = self.worker.logfile.read_text(errors="replace")
        return int(self.worker.popen.poll() is not None) + sum(log.count(m) for m in CRASH_MARKS)


@dataclass(frozen=True)
class HostileKeys:
    """One tenant of the stack and its credentials: tenant API key, an owner's and a
    viewer's principal key, and a customer inbox token."""

    tenant: str
    slug: str
    tenant_id: int
    owner: str
    viewer: str
    inbox: str


def stack_env(database_url: str, broker_url: str, prefix: str, sendgrid_public_key: str
              ) -> dict[str, str]:
    """``RSN_*`` of every process of the stack (and of this one while a test talks to it)."""
    return {
        "RSN_DATABASE_URL": database_url, "RSN_BROKER_URL": broker_url,
        "RSN_REDIS_KEY_PREFIX": prefix, "RSN_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "RSN_TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "RSN_INBOX_TOKEN_SECRET": INBOX_MASTER,
        "RSN_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "RSN_SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_public_key,
        # the quotas have tests of their own; here every request should reach its handler
        "RSN_API_RENDER_RATE": "100000/m:10000", "RSN_API_TEST_SEND_RATE": "100000/h:10000",
        "RSN_API_TEST_SEND_TENANT_RATE": "100000/h:10000",
        "RSN_API_VERIFICATION_RATE": "100000/h:10000",
        "RSN_WARM_TEMPLATES": "false", "RSN_INGEST_DRAIN_EVENTS": "200",
    }


def _spawn(name: str, args: list[str], env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            [sys.executable, "-m", "return_notify.cli", *args],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=fh,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(name, popen, log)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start_stack(env: dict[str, str], logdir: Path, sendgrid_key: Any) -> HostileStack:
    """Start the API server, a worker on every queue and the stream listener; the API's
    memory sampler runs until :func:`stop_stack`."""
    from return_notify.devtools.processes import start_worker, wait_for
    from tests.integration.provider_helpers import free_port

    port = free_port()
    api = _spawn("api", ["api", "--port", str(port)], env, logdir)
    base = f"http://127.0.0.1:{port}"
    wait_for(api, lambda: _answers(base + "/healthz"), 60)
    worker = start_worker(env, concurrency=2, name="hostile-worker", logdir=str(logdir))
    ready = logdir / "listener.ready"
    listener = _spawn("listener", ["streams", "listen"], {**env, "RSN_READY_FILE": str(ready)},
                      logdir)
    wait_for(listener, ready.exists, 60)
    stack = HostileStack(base, env, api, worker, listener, sendgrid_key)
    stack.sampler = RssSampler(api.popen.pid).start()
    return stack


def stop_stack(stack: HostileStack) -> None:
    FIGURES.worker_crashes = stack.worker_crashes()
    if stack.sampler is not None:
        stack.sampler.stop()
    for proc in (stack.listener, stack.worker, stack.api):
        proc.stop(20)


class LiveClient:
    """Requests to the running API, each counted (5xx included) and its CPU measured as
    the API process's CPU time across the request (requests are sent one at a time)."""

    def __init__(self, stack: HostileStack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.base_url, timeout=30.0)
        self.proc = psutil.Process(stack.api.popen.pid)

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        before = self._cpu()
        response = self.http.request(method, path, **kwargs)
        spent = self._cpu() - before
        FIGURES.requests += 1
        if spent > FIGURES.longest_request_cpu_s:
            FIGURES.longest_request_cpu_s = spent
            FIGURES.longest_request = f"{method} {path.split('?')[0]}"
        if response.status_code >= 500:
            FIGURES.server_errors += 1
            if len(FIGURES.server_error_samples) < 20:
                FIGURES.server_error_samples.append(
                    f"{method} {path} -> {response.status_code} {response.text[:200]}")
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self.http.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ------------------------------------------------------------------ events ---------------

def stored_or_rejected(tracers: set[str]) -> set[str]:
    """Which tracers (return ids) are stored as an event or kept in ``rejected_events``."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        stored = set(s.execute(text(
            "SELECT r.return_id FROM events e JOIN returns r ON r.id = e.return_pk "
            "WHERE r.return_id = ANY(CAST(:t AS text[]))"), {"t": sorted(tracers)}).scalars())
        rejected = s.execute(text("SELECT payload::text FROM rejected_events WHERE "
                                  "received_at > now() - interval '1 hour'")).scalars().all()
    blob = "\n".join(rejected)
    return stored | {t for t in tracers - stored if t in blob}


#: text of every kind: control characters, NUL, lone surrogates, other planes, long runs
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cc", "Cs", "Cf", "Zl", "Zp"]), max_size=8),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60),
    st.sampled_from(["\x00", "\ud800", "Bob\u0000", "\udfff\ud800", "a\u202eb", "\ufeff",
                     "ana@example.com\n", "a<x@evil.example>", "+1415555\u0661\u0662\u0663",
                     "²", "\r\nBcc: x@evil.example"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\U0001F600"]),
              st.integers(min_value=1000, max_value=30_000)),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False, allow_infinity=False), HOSTILE_TEXT)


def nested(depth: int) -> Any:
    """A value nested exactly ``depth`` levels (the contract allows 16)."""
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE_DATA = st.one_of(
    st.recursive(JSON_SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
        max_leaves=12),
    st.integers(min_value=10, max_value=40).map(nested),
)


def hostile_event(tenant: str, tracer: str, draw: Callable[[Any], Any]) -> dict[str, Any]:
    """A plausible event of ``tenant`` with hostile values in some fields; its
    ``return_id`` is ``tracer`` (always clean: how the test finds it again)."""
    def maybe(strategy: Any, good: Any) -> Any:
        return draw(strategy) if draw(st.booleans()) else good

    customer: dict[str, Any] = {"id": maybe(HOSTILE_TEXT, "c-1")}
    for key, good in (("name", "Ana"), ("email", "ana@example.com"), ("phone", "+14155550123"),
                      ("locale", "en-US"), ("timezone", "Europe/Berlin")):
        if draw(st.booleans()):
            customer[key] = maybe(HOSTILE_TEXT, good)
    event: dict[str, Any] = {
        "return_id": tracer,  # first: kept even in a truncated copy of a huge payload
        "event_id": maybe(HOSTILE_TEXT.map(lambda t: t + tracer), f"ev-{tracer}"),
        "tenant": tenant, "milestone": maybe(st.sampled_from(
            ["return_approved", "refund_processed", "teleported", "", "\x00"]), "return_approved"),
        "occurred_at": maybe(HOSTILE_TEXT, "2026-03-01T10:00:00+00:00"),
        "customer": customer, "data": {"reason": maybe(HOSTILE_TEXT, "too small")},
    }
    if draw(st.booleans()):
        event["data"]["extra"] = draw(HOSTILE_DATA)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        event[draw(HOSTILE_TEXT)] = "unknown field"
    return event
