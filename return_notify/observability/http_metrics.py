"""HTTP API metrics: request counts and durations by route template, and ``GET /metrics``.

Pure ASGI middleware (server-sent event streams pass through untouched); one set of metric
objects per process, shared by every app instrumented in it. With
``PROMETHEUS_MULTIPROC_DIR`` set (several server processes) the endpoint sums them all.
Called through ``return_notify.observability.metrics.instrument_app``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client.registry import CollectorRegistry
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
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
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return registry


_api: _ApiMetrics | None = None


def _api_metrics() -> _ApiMetrics:
    global _api
    with _lock:
        if _api is None:
            _api = _ApiMetrics()
        return _api


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
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", "GET"))
            self.m.requests.labels(method, template, str(status["code"])).inc()
            self.m.seconds.labels(method, template).observe(time.perf_counter() - t0)


def instrument(app: FastAPI) -> None:
    """Count and time every request by route template and serve ``GET /metrics``.

    ``/metrics`` needs no credentials (like Flower's): keep it off public networks.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.responses import Response

    api = _api_metrics()

    def metrics_endpoint() -> Response:
        return Response(generate_latest(api.scrape_registry()), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
