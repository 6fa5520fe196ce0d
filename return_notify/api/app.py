"""``create_app()``: the FastAPI application behind ``return-notify api`` (docs at ``/docs``).

Nothing connects at import or construction time: the database engine is the process's
own (``storage.db.get_engine``, built on first use, rebuilt after a fork) and Redis
clients are made per check or per live stream.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from return_notify.api import (
    admin_rules,
    events,
    health,
    inbox,
    links,
    returns,
    sources,
    status_pages,
    unsubscribe,
    webhooks,
)
from return_notify.errors import ConfigurationError
from return_notify.events import ReturnEvent
from return_notify.templating.isolation import SandboxBusy

log = logging.getLogger(__name__)

DESCRIPTION = """\
Return status notifications over HTTP.

* **Retailer backends** publish return milestone events (`POST /v1/events`, tenant API key)
  and look up what a customer was told (`GET /v1/returns/{return_id}`).
* **Retailer apps** show the in-app inbox with a customer inbox token (`/v1/inbox…`).
* **Providers** report delivery and opt-outs (`/v1/webhooks/…`, signature-checked).
* **Recipients** unsubscribe in one click (`/v1/unsubscribe/{token}`, RFC 8058), follow
  tracked links (`/r/{token}`), rate their return (`/rate/{token}`) and read its status
  (`/s/{token}`).
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # the template sandbox's fork server imports the renderer once, off the request path
    from return_notify.templating.isolation import warm_up

    threading.Thread(target=_quietly, args=(warm_up,), name="rsn-sandbox-warm-up",
                     daemon=True).start()
    yield
    from return_notify.storage.db import dispose_engine

    dispose_engine()


def _quietly(func: Any) -> None:
    try:
        func()
    except Exception:  # noqa: BLE001 - the first preview starts it instead
        log.warning("template sandbox warm-up failed", exc_info=True)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    event_schema = ReturnEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(event_schema.pop("$defs", {}))
    components["ReturnEvent"] = event_schema
    app.openapi_schema = schema
    return schema


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, for errors, which may echo what was
    sent: a lone surrogate (a ``"\\ud800"`` escape in a JSON body decodes to one) stays an
    escape instead of failing the UTF-8 encoding of the answer (a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


def create_app() -> FastAPI:
    """A new application; safe to call per test (no global state besides the engine)."""
    from return_notify import __version__
    from return_notify.config.settings import get_settings

    # every body is capped while it streams in (413); routes that take more raise it
    app = FastAPI(title="return-notify", version=__version__, description=DESCRIPTION,
                  lifespan=_lifespan, max_body_size=get_settings().api_max_body_bytes)
    for module in (events, returns, inbox, webhooks, unsubscribe, links, status_pages, health):
        app.include_router(module.router)
    from return_notify.api import templates as admin_templates  # branding and templates admin
    app.include_router(admin_templates.router)
    from return_notify.api import test_recipients

    app.include_router(test_recipients.router)
    app.include_router(admin_rules.router)
    app.include_router(sources.router)
    from return_notify.api import preferences as preferences_api

    app.include_router(preferences_api.router)
    from return_notify.api import stats as stats_api  # GET /v1/stats (principal key)

    app.include_router(stats_api.router)
    from return_notify.observability.http_metrics import instrument

    instrument(app)  # request metrics (served on RSN_API_METRICS_PORT, not here)

    @app.exception_handler(ConfigurationError)
    async def _config_error(request: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("%s %s: database unavailable (%s)", request.method, request.url.path,
                  type(exc.orig).__name__)
        return JSONResponse({"detail": "the database is unavailable; retry shortly"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (204, 304) or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=exc.headers)
        return AsciiJSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                 headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())},
                                 status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(SandboxBusy)
    async def _sandbox_busy(request: Request, exc: SandboxBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, headers={"Retry-After": "2"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"},
                            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
