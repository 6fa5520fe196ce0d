"""Admin API for principals and their API keys (``/v1/admin/principals…``): owners and admins.

An owner may create any principal; an admin any but owners and admins (and keys only
for those). Keys are returned once, at creation, and never stored in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from return_notify.access.principals import (
    PrincipalConflict,
    PrincipalError,
    can_grant,
    create_principal,
    get_principal,
    issue_key,
    list_principals,
    revoke_key,
)
from return_notify.api.limits import GuardedRoute
from return_notify.api.rbac import Principal, require
from return_notify.storage.db import session_scope
from return_notify.storage.models import AdminPrincipal

router = APIRouter(tags=["admin"], route_class=GuardedRoute)

Role = Literal["owner", "admin", "regional_manager", "category_manager", "viewer"]
PrincipalId = Annotated[int, Path(ge=1, le=2**31 - 1)]
KeyPrefix = Annotated[str, Path(pattern=r"^[0-9a-f]{1,16}$")]
Reader = Annotated[Principal, Depends(require("principals:read"))]
Writer = Annotated[Principal, Depends(require("principals:write"))]


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Unique in the tenant")
    role: Role
    regions: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=50,
        description="regional_manager (and optionally viewer): e.g. EU covers EU-DE, EU-FR")
    categories: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=50,
        description="category_manager (and optionally viewer): exact product categories")
    key_name: str | None = Field(None, max_length=100, description="Label for the first key")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100)


class PrincipalOut(BaseModel):
    id: int
    name: str
    role: str
    regions: list[str]
    categories: list[str]
    created_at: datetime
    created_by: str | None
    key_prefixes: list[str] = Field(description="Active keys (the part after 'rsnp_')")


class PrincipalCreated(BaseModel):
    principal: PrincipalOut
    api_key: str = Field(description="Shown once; store it now")


class KeyCreated(BaseModel):
    key_prefix: str
    api_key: str = Field(description="Shown once; store it now")


def _clean(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="no NUL characters")
    return text


def _target(s: Any, by: Principal, principal_id: int) -> AdminPrincipal:
    target = get_principal(s, by.tenant_id, principal_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no principal {principal_id}")
    decision = can_grant(by, target.role)
    if not decision:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=decision.reason)
    return target


@router.get("/principals", response_model=list[PrincipalOut],
            summary="Principals of the tenant (owners and admins)")
def principals_list(principal: Reader) -> list[dict[str, Any]]:
    with session_scope() as s:
        return list_principals(s, principal.tenant_id)


@router.post("/principals", response_model=PrincipalCreated, status_code=status.HTTP_201_CREATED,
             summary="Create a principal with a first API key (shown once)")
def principals_create(body: PrincipalIn, principal: Writer) -> dict[str, Any]:
    decision = can_grant(principal, body.role)
    if not decision:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=decision.reason)
    _clean(body.key_name)
    with session_scope() as s:
        try:
            created, key = create_principal(s, principal, body.name, body.role, body.regions,
                                            body.categories, body.key_name)
        except PrincipalConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        except PrincipalError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return {"principal": created, "api_key": key}


@router.post("/principals/{principal_id}/keys", response_model=KeyCreated,
             status_code=status.HTTP_201_CREATED,
             summary="Issue another API key for a principal (rotation)")
def principals_issue_key(principal_id: PrincipalId, body: KeyIn, principal: Writer
                         ) -> dict[str, Any]:
    with session_scope() as s:
        target = _target(s, principal, principal_id)
        key = issue_key(s, principal, target, _clean(body.name))
    return {"key_prefix": key.split("_")[1], "api_key": key}


@router.delete("/principals/{principal_id}/keys/{key_prefix}",
               status_code=status.HTTP_204_NO_CONTENT,
               summary="Revoke a principal's API key (401 with it from then on)")
def principals_revoke_key(principal_id: PrincipalId, key_prefix: KeyPrefix, principal: Writer
                          ) -> Response:
    with session_scope() as s:
        target = _target(s, principal, principal_id)
        if not revoke_key(s, principal, target, key_prefix):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                detail=f"no active key {key_prefix} for principal {principal_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
