"""Admin authentication (principal keys) and permissions as FastAPI dependencies.

Every admin route declares its permission with ``require(action, resource_scope)``; the
decision itself is ``principals.authorize`` (one place). For example::

    from return_notify.api.rbac import Admin, Scope, enforce, query_scope, require

    def template_scope(template_id: int, principal: Admin) -> Scope:  # 404 if missing
        ...load it for principal.tenant_id...; return Scope(row.region, row.category)

    @router.get("/v1/admin/templates")                     # a listing: role check only,
    def list_(p: Annotated[Principal, Depends(require("templates:read"))]): ...  # filter rows
    @router.put("/v1/admin/templates/{template_id}")       # one resource: role + scope
    def put(p: Annotated[Principal, Depends(require("templates:write", template_scope))]): ...

When the scope is in the request body, depend on ``require(action)`` and call
``enforce(principal, action, body.region, body.category)`` first thing in the route.
401: no, unknown or revoked key (tenant ingest keys are not admin keys); 403: not allowed,
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Query, Request, status

from return_notify.access.principals import (
    Principal,
    Scope,
    allowed_action,
    authenticate,
    authorize,
)
from return_notify.core.regions import event_category, event_region
from return_notify.storage.db import session_scope

__all__ = ["Admin", "Principal", "Scope", "authorize", "current_principal", "enforce",
           "query_scope", "require"]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <principal API key>")] = None,
) -> Principal:
    """FastAPI dependency: the principal of the ``rsnp_…`` key in ``Authorization: Bearer``
    (already known when ``api.limits.GuardedRoute`` authenticated before reading the body)."""
    known = getattr(request.state, "rsn_principal", None)
    if isinstance(known, Principal):
        return known
    scheme, _, value = (authorization or "").partition(" ")
    key = value.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise _unauthorized("missing key: send 'Authorization: Bearer <principal API key>'")
    if key.startswith("rsn_"):
        raise _unauthorized("a tenant ingest key cannot administer: use a principal key "
                            "(rsnp_…, from `return-notify principals create`)")
    with session_scope() as session:
        principal = authenticate(session, key)
    if principal is None:
        raise _unauthorized("invalid or revoked principal key")
    return principal


Admin = Annotated[Principal, Depends(current_principal)]


def enforce(principal: Principal, action: str, region: str | None,
            category: str | None) -> None:
    """Raise 403 unless ``authorize`` allows ``action`` on a resource of that scope."""
    decision = authorize(principal, action, region, category)
    if not decision:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=decision.reason)


def require(action: str, resource_scope: Callable[..., Any] | None = None
            ) -> Callable[..., Principal]:
    """A dependency giving the principal once it may do ``action``.

    ``resource_scope``: a dependency returning the target resource's ``Scope`` (it may
    raise 404); without it only the role is checked (listings filter rows themselves).
    """
    if resource_scope is None:
        def role_only(principal: Admin) -> Principal:
            decision = allowed_action(principal, action)
            if not decision:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=decision.reason)
            return principal

        return role_only

    # ``Depends`` as a default, not in ``Annotated``: annotations are strings here and could
    # not see the local ``resource_scope``.
    def scoped(principal: Admin, scope: Scope = Depends(resource_scope)) -> Principal:
        enforce(principal, action, scope.region, scope.category)
        return principal

    return scoped


def query_scope(
    region: Annotated[str | None, Query(max_length=32, description="Region, e.g. EU-DE")] = None,
    category: Annotated[str | None, Query(max_length=64, description="Product category")] = None,
) -> Scope:
    """Scope from ``?region=&category=`` (an event's values; omitted = none)."""
    return Scope(event_region(region), event_category(category))
