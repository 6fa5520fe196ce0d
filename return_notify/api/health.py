"""``GET /healthz``: PostgreSQL and Redis reachable → 200 with details, else 503."""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from return_notify.api.limits import GuardedRoute
from return_notify.config.settings import get_settings
from return_notify.storage.db import get_engine
from return_notify.storage.redis import redis_client

router = APIRouter(tags=["health"], route_class=GuardedRoute)

CHECK_TIMEOUT_S = 3.0


def _database() -> dict[str, Any]:
    t0 = time.perf_counter()
    with get_engine().connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return {"ok": True, "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
            "revision": revision}


def _redis() -> dict[str, Any]:
    url = get_settings().broker_url
    if not url:
        return {"ok": False, "error": "RSN_BROKER_URL is not set"}
    client = redis_client(url=url, timeout_s=CHECK_TIMEOUT_S)
    try:
        t0 = time.perf_counter()
        client.ping()
        return {"ok": True, "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}
    finally:
        client.close()


async def _check(fn: Any) -> dict[str, Any]:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S + 0.5):
            result: dict[str, Any] = await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
            return result
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S} s"}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        return {"ok": False, "error": type(exc).__name__}


@router.get("/healthz", summary="Liveness and readiness: database and Redis reachable",
            responses={503: {"description": "A dependency is unreachable"}})
async def healthz() -> JSONResponse:
    checks = {"database": await _check(_database), "redis": await _check(_redis)}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks},
                        status_code=status.HTTP_200_OK if ok else
                        status.HTTP_503_SERVICE_UNAVAILABLE)
