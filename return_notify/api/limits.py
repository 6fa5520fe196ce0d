"""What a request may cost before anyone knows who sent it: authentication first, bodies
capped while they stream, JSON nesting capped.

* **Body size**: the application refuses any body over ``RSN_API_MAX_BODY_BYTES`` with 413
  as it streams in (FastAPI's ``max_body_size``, enforced chunk by chunk, Content-Length or
  not); the routes that take more (events, carrier and SendGrid webhooks) raise the ceiling
  for themselves and read their body only after authenticating or with their own cap.
* **Authentication before parsing**: FastAPI reads and decodes a route's JSON body before it
  solves any dependency, so a 30 MB body reached ``json.loads`` before the 401. Every route
  is a :class:`GuardedRoute`: when it has a body, the route's authentication (principal key,
  tenant key or inbox token, whichever its dependencies name) runs first, and its result is
  kept for the dependency, which does not run it twice.
* **JSON depth and text**: a body nested deeper than ``RSN_API_MAX_JSON_DEPTH`` answers 422
  (and ``json``'s own recursion limit is a 422 too, never a 500): :func:`loads_limited`; so
  does a body with a NUL character or a lone surrogate in any string (:func:`text_problem`),
  which PostgreSQL could not store and an error could not echo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from return_notify.config.settings import get_settings

__all__ = ["BODY_CEILING", "GuardedRoute", "JsonTooDeep", "json_depth", "loads_limited"]

#: the highest body cap any route may be configured to (events, webhooks); each such route
#: enforces its own setting while it reads, under this ceiling
BODY_CEILING = 64 * 1024 * 1024

#: state keys where the early authentication leaves its result for the dependency
PRINCIPAL_STATE, TENANT_STATE, CUSTOMER_STATE = "rsn_principal", "rsn_tenant", "rsn_customer"


class JsonTooDeep(ValueError):
    """The JSON nests deeper than allowed (or deeper than the parser can go)."""


def json_depth(value: Any, limit: int) -> int:
    """The nesting depth of a decoded JSON value, walked without recursion; stops (and
    returns ``limit + 1``) as soon as it passes ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return deepest


def loads_limited(body: bytes | str, max_depth: int | None = None) -> Any:
    """``json.loads`` that raises :class:`JsonTooDeep` past ``max_depth`` (default
    ``RSN_API_MAX_JSON_DEPTH``) and ``ValueError`` for what is not JSON."""
    limit = max_depth if max_depth is not None else get_settings().api_max_json_depth
    try:
        value = json.loads(body)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels") from None
    if json_depth(value, limit) > limit:
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels")
    return value


_NOT_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def text_problem(value: Any) -> str | None:
    """Where a decoded JSON value holds a NUL character or a lone UTF-16 surrogate (a
    ``"\\ud800"`` escape decodes to one): neither is text, PostgreSQL stores neither, and
    echoing one back in an error cannot even be encoded. None when there is none."""
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _NOT_TEXT.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _NOT_TEXT.search(key):
                    return f"{where} (a key)"
                stack.append((child, f"{where}.{_NOT_TEXT.sub('?', str(key))[:64]}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def too_deep(exc: JsonTooDeep) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"type": "json_depth", "loc": ["body"], "msg": str(exc)}])


# ------------------------------------------------------------------ authentication first


def _authenticate_principal(request: Request) -> None:
    from return_notify.api.rbac import current_principal

    setattr(request.state, PRINCIPAL_STATE,
            current_principal(request, request.headers.get("authorization")))


def _authenticate_tenant(request: Request) -> None:
    from return_notify.api.auth import require_tenant

    setattr(request.state, TENANT_STATE,
            require_tenant(request, request.headers.get("authorization")))


def _authenticate_customer(request: Request) -> None:
    from return_notify.api.auth import require_customer

    setattr(request.state, CUSTOMER_STATE,
            require_customer(request, request.headers.get("authorization"),
                             request.query_params.get("token")))


def _authenticators() -> dict[Callable[..., Any], Callable[[Request], None]]:
    from return_notify.api.auth import require_customer, require_tenant
    from return_notify.api.rbac import current_principal

    return {current_principal: _authenticate_principal, require_tenant: _authenticate_tenant,
            require_customer: _authenticate_customer}


def _authentication_of(dependant: Dependant) -> Callable[[Request], None] | None:
    """The authentication a route's dependencies perform (the first found), if any."""
    known = _authenticators()
    stack = [dependant]
    while stack:
        dep = stack.pop()
        if dep.call in known:
            return known[dep.call]
        stack.extend(reversed(dep.dependencies))
    return None


class GuardedRoute(APIRoute):
    """A route whose body is read only once the caller is authenticated, and whose JSON
    body is held to the depth cap (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()
        if self.body_field is None:
            return inner
        authenticate = _authentication_of(self.dependant)

        async def handler(request: Request) -> Response:
            if authenticate is not None:
                await run_in_threadpool(authenticate, request)
            await _check_json(request)
            return await inner(request)

        return handler


async def _check_json(request: Request) -> None:
    """Decode a JSON body once, under the depth cap, for FastAPI to use (its own error
    stays for what is not JSON at all)."""
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type.lower():
        return
    body = await request.body()
    if not body:
        return
    try:
        value = await run_in_threadpool(loads_limited, body)
    except JsonTooDeep as exc:
        raise too_deep(exc) from None
    except ValueError:
        return
    where = await run_in_threadpool(text_problem, value)
    if where is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
            {"type": "text", "loc": where.split("."),
             "msg": "contains a NUL character or a lone surrogate (not text)"}])
    request._json = value  # what Starlette's Request.json() returns from now on
