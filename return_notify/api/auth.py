"""Authentication as FastAPI dependencies: tenant API keys (``Bearer rsn_…``, checked by
``access/tenant_keys.py``) and customer inbox tokens (``inbox.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, status

from return_notify.access.tenant_keys import TenantAuth, authenticate_key
from return_notify.config.settings import get_settings
from return_notify.inbox import InvalidInboxToken, verify_inbox_token
from return_notify.storage.db import session_scope
from return_notify.storage.tenants import find_tenant_id


@dataclass(frozen=True)
class CustomerAuth:
    """The customer whose inbox a request reads."""

    tenant_id: int
    tenant: str
    customer_id: str
    expires_at: int


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require_tenant(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <tenant API key>")] = None,
) -> TenantAuth:
    """FastAPI dependency: the tenant of the API key in ``Authorization: Bearer``."""
    known = getattr(request.state, "rsn_tenant", None)
    if isinstance(known, TenantAuth):
        return known
    key = _bearer(authorization)
    if key is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <tenant API key>'")
    with session_scope() as session:
        tenant = authenticate_key(session, key)
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    return tenant


def require_customer(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <inbox token>")] = None,
    token: Annotated[str | None, Query(description="Inbox token, for EventSource clients "
                                        "that cannot set headers")] = None,
) -> CustomerAuth:
    """FastAPI dependency: the customer of the inbox token (header, or ``?token=``), whose
    lifetime ends within ``RSN_INBOX_TOKEN_MAX_TTL_S``."""
    known = getattr(request.state, "rsn_customer", None)
    if isinstance(known, CustomerAuth):
        return known
    settings = get_settings()
    master = settings.inbox_token_secret
    if master is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the inbox is not configured (RSN_INBOX_TOKEN_SECRET unset)")
    raw = _bearer(authorization) or token
    if not raw:
        raise _unauthorized("missing inbox token: send 'Authorization: Bearer <token>' "
                            "or '?token=<token>'")
    try:
        ident = verify_inbox_token(raw, master.get_secret_value(),
                                   max_ttl_s=settings.inbox_token_max_ttl_s)
    except InvalidInboxToken as exc:
        raise _unauthorized(str(exc)) from None
    with session_scope() as session:
        tid = find_tenant_id(session, ident.tenant)
    if tid is None:
        raise _unauthorized("inbox token names an unknown tenant")
    return CustomerAuth(tid, ident.tenant, ident.customer_id, ident.expires_at)


Tenant = Annotated[TenantAuth, Depends(require_tenant)]
Customer = Annotated[CustomerAuth, Depends(require_customer)]
