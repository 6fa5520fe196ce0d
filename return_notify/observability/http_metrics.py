"""HTTP API metrics: request counts and durations by route template, and their endpoint.

Pure ASGI middleware (server-sent event streams pass through untouched); one set of metric
objects per process, shared by every app instrumented in it. Labels are bounded whatever the
requests say: a method outside the standard ones counts as ``OTHER`` and a path no route
matches as ``unmatched`` (a client sending random methods or paths cannot create series).

The endpoint is not a route of the public app: ``start_api_endpoint`` serves it on an
internal port of its own (``RSN_API_METRICS_PORT`` on ``RSN_METRICS_ADDRESS``) from the
process ``return-notify api`` runs in, summing every server process (``--workers N``) through
the multiprocess directory it exports before uvicorn starts them.
Called through ``return_notify.observability.metrics.instrument_app``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from return_notify.observability import multiprocess

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client.registry import CollectorRegistry
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: the methods counted under their own name; any other is ``OTHER``
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a request no route matched (404s of any path, probes, scanners)
UNMATCHED = "unmatched"
_lock = threading.Lock()


class _ApiMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("rsn_api_requests", "HTTP requests by route template and "
                                "status", ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("rsn_api_request_seconds", "HTTP request duration",
                                 ["method", "route"], buckets=API_BUCKETS_S,
                                 registry=self.registry)
        self.in_progress = Gauge("rsn_api_requests_in_progress", "HTTP requests being served",
                                 registry=self.registry, multiprocess_mode="livesum")

    def scrape_registry(self) -> CollectorRegistry:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return self.registry
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(multiprocess.LiveProcessCollector(path))  # type: ignore[arg-type]
        return registry


_api: _ApiMetrics | None = None


def _api_metrics() -> _ApiMetrics:
    global _api
    with _lock:
        if _api is None:
            _api = _ApiMetrics()
        return _api


def labels_for(scope: Scope) -> tuple[str, str]:
    """The (method, route) labels of a request: both from finite sets."""
    method = str(scope.get("method", "GET")).upper()
    route = getattr(scope.get("route"), "path", None)
    return (method if method in METHODS else "OTHER",
            route if isinstance(route, str) and route else UNMATCHED)


class MetricsMiddleware:
    """Pure ASGI middleware (streams and server-sent events pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.m = _api_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        t0 = time.perf_counter()
        self.m.in_progress.inc()
        try:
            await self.app(scope, receive, _send)
        finally:
            self.m.in_progress.dec()
            method, template = labels_for(scope)
            code = status["code"] if 100 <= status["code"] <= 599 else 500
            self.m.requests.labels(method, template, str(code)).inc()
            self.m.seconds.labels(method, template).observe(time.perf_counter() - t0)


def instrument(app: FastAPI) -> None:
    """Count and time every request by route template (no endpoint on ``app`` itself)."""
    _api_metrics()
    app.add_middleware(MetricsMiddleware)


def scrape() -> bytes:
    """This process's API metrics (every server process's, in multiprocess mode) in the
    Prometheus text format: what the endpoint answers."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(_api_metrics().scrape_registry()))


def start_api_endpoint(port: int, address: str, directory: str | None = None) -> Any:
    """Before uvicorn starts: export a fresh multiprocess directory (``directory``, else
    ``PROMETHEUS_MULTIPROC_DIR``, else a temporary one) that every server process inherits,
    and serve their sum on ``address:port`` from a thread of this process. Returns the
    server, or ``None`` if the port is taken (logged)."""
    path, owned = multiprocess.prepare_dir(directory)
    if owned:
        import atexit
        import shutil

        atexit.register(shutil.rmtree, path, True)
    multiprocess.enable(path)
    return multiprocess.serve(port, address, [multiprocess.LiveProcessCollector(path)])
