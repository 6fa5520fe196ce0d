"""Admin API for notification rules, ``rules explain`` and the audit log (``/v1/admin/…``).

Authenticated with a principal key (``rsnp_…``); every route declares its permission
with ``rbac.require``. Listings return only what the principal may read; a single
resource out of scope is 403. Principal management lives in ``admin_principals`` and is
included here, so ``app.py`` needs one ``include_router(admin_rules.router)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from return_notify.access.audit import list_entries
from return_notify.access.principals import authorize
from return_notify.api import admin_principals
from return_notify.api.limits import GuardedRoute
from return_notify.api.rbac import Admin, Principal, Scope, enforce, query_scope, require
from return_notify.core.regions import normalize_category, normalize_region
from return_notify.events import Milestone
from return_notify.rules.resolver import explain, validate_template
from return_notify.rules.store import (
    RuleConflict,
    RuleNotFound,
    RuleSpec,
    create_rule,
    delete_rule,
    disable_rule,
    get_rule,
    list_rules,
    rule_dict,
    update_rule,
)
from return_notify.storage.db import session_scope

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=GuardedRoute)
router.include_router(admin_principals.router)

Channel = Literal["email", "sms", "inapp"]
Urgency = Literal["transactional", "informational"]
RegionIn = Annotated[str | None, AfterValidator(normalize_region)]
CategoryIn = Annotated[str | None, AfterValidator(normalize_category)]
TemplateIn = Annotated[str | None, AfterValidator(validate_template)]
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Rule id")]


class RuleIn(BaseModel):
    """A new rule. ``region``/``category`` omitted, null or ``*`` = ANY."""

    model_config = ConfigDict(extra="forbid")

    milestone: Milestone
    region: RegionIn = Field(None, max_length=32, description="e.g. EU (covers EU-DE) or US")
    category: CategoryIn = Field(None, max_length=64, description="Product category, e.g. apparel")
    channels: list[Channel] = Field(min_length=1, max_length=3)
    template: TemplateIn = Field(None, max_length=64, description="Template name or variant")
    urgency: Urgency | None = Field(None, description="Unset: the milestone's default")
    enabled: bool = Field(True, description="Disabled: this scope is notified on no channel")
    override_opt_out: bool = Field(
        False, description="Send even on channels the customer opted out of (transactional "
        "rules only; never beats SMS STOP or an email unsubscribe/suppression)")


class RulePatch(BaseModel):
    """Fields to change (omitted ones stay); ``template``/``urgency`` null = back to default."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] | None = Field(None, min_length=1, max_length=3)
    template: TemplateIn = Field(None, max_length=64)
    urgency: Urgency | None = None
    enabled: bool | None = None
    override_opt_out: bool | None = Field(None, description="Transactional rules only")
    expected_version: int | None = Field(None, ge=1, le=2**31 - 1,
                                         description="409 if the rule's version differs")


class RuleOut(BaseModel):
    id: int
    milestone: str
    region: str | None
    category: str | None
    channels: list[str]
    template: str | None
    urgency: str | None
    enabled: bool
    override_opt_out: bool
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None


class ResultOut(BaseModel):
    channels: list[str] = Field(description="Empty: no notification")
    urgency: str
    template: str | None
    rule_id: int | None = Field(description="None: the config default applies")
    reason: str
    override_opt_out: bool = Field(description="The channels go out despite channel opt-outs")


class CandidateOut(BaseModel):
    outcome: Literal["won", "lost", "not_applicable", "default_used", "default_unused"]
    why: str
    rule: dict[str, Any] | None = Field(description="None: the config default")


class ExplainOut(BaseModel):
    milestone: str
    region: str | None
    category: str | None
    result: ResultOut
    candidates: list[CandidateOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    principal_id: int | None
    action: str
    resource: str
    resource_id: str | None
    region: str | None
    category: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    entries: list[AuditOut]
    next_before_id: int | None = Field(description="Pass as before_id for older entries")


class MeOut(BaseModel):
    id: int | None
    tenant: str
    name: str
    role: str
    regions: list[str]
    categories: list[str]


def _unprocessable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))


def rule_scope(rule_id: RuleId, principal: Admin) -> Scope:
    """The scope of ``/rules/{rule_id}`` (404 if the tenant has no such rule)."""
    with session_scope() as s:
        row = get_rule(s, principal.tenant_id, rule_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no rule {rule_id}")
        return Scope(row.region, row.product_category)


@router.get("/me", response_model=MeOut, summary="The principal of the key used")
def me(principal: Admin) -> dict[str, Any]:
    return {"id": principal.id, "tenant": principal.tenant, "name": principal.name,
            "role": principal.role, "regions": list(principal.regions),
            "categories": list(principal.categories)}


@router.get("/rules", response_model=list[RuleOut], summary="Rules the principal may read")
def rules_list(
    principal: Annotated[Principal, Depends(require("rules:read"))],
    milestone: Milestone | None = None,
    region: Annotated[str | None, Query(max_length=32, description="Exact; '*' = ANY only")]
    = None,
    category: Annotated[str | None, Query(max_length=64, description="Exact; '*' = ANY only")]
    = None,
) -> list[dict[str, Any]]:
    try:
        reg, cat = normalize_region(region), normalize_category(category)
    except ValueError as exc:
        raise _unprocessable(exc) from None
    with session_scope() as s:
        rows = list_rules(s, principal.tenant_id, milestone.value if milestone else None)
        return [rule_dict(r) for r in rows
                if (region is None or r.region == reg)
                and (category is None or r.product_category == cat)
                and authorize(principal, "rules:read", r.region, r.product_category)]


@router.post("/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED,
             summary="Create a rule (409 if its scope already has one)")
def rules_create(body: RuleIn, principal: Annotated[Principal, Depends(require("rules:write"))]
                 ) -> dict[str, Any]:
    enforce(principal, "rules:write", body.region, body.category)
    try:
        spec = RuleSpec(body.milestone, tuple(dict.fromkeys(body.channels)), body.region,
                        body.category, body.template, body.urgency, body.enabled,
                        body.override_opt_out)
    except ValueError as exc:  # override_opt_out on a rule that is not transactional
        raise _unprocessable(exc) from None
    with session_scope() as s:
        try:
            return rule_dict(create_rule(s, principal.tenant_id, spec, principal.actor))
        except RuleConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None


@router.get("/rules/explain", response_model=ExplainOut,
            summary="Which rule applies to such an event, and why each candidate won or lost")
def rules_explain(
    principal: Annotated[Principal, Depends(require("rules:read", query_scope))],
    scope: Annotated[Scope, Depends(query_scope)],
    milestone: Milestone,
) -> dict[str, Any]:
    with session_scope() as s:
        ex = explain(s, principal.tenant_id, scope.region, scope.category, milestone)
    candidates = []
    for c in ex.candidates:
        r = c.rule
        if r is not None and not authorize(principal, "rules:read", r.region, r.category):
            continue  # a rule that does not apply here and is outside the principal's scope
        brief = None if r is None else {
            "id": r.id, "region": r.region, "category": r.category, "channels": list(r.channels),
            "template": r.template, "urgency": r.urgency, "enabled": r.enabled,
            "override_opt_out": r.override_opt_out}
        candidates.append({"outcome": c.outcome, "why": c.why, "rule": brief})
    res = ex.result
    return {"milestone": ex.milestone.value, "region": ex.region, "category": ex.category,
            "result": {"channels": list(res.channels), "urgency": res.urgency,
                       "template": res.template, "rule_id": res.rule_id, "reason": res.reason,
                       "override_opt_out": res.override_opt_out},
            "candidates": candidates}


@router.get("/rules/{rule_id}", response_model=RuleOut, summary="One rule")
def rules_get(rule_id: RuleId,
              principal: Annotated[Principal, Depends(require("rules:read", rule_scope))]
              ) -> dict[str, Any]:
    with session_scope() as s:
        row = get_rule(s, principal.tenant_id, rule_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no rule {rule_id}")
        return rule_dict(row)


def _change(principal: Principal, rule_id: int, changes: dict[str, Any],
            expected_version: int | None = None, disable: bool = False) -> dict[str, Any]:
    with session_scope() as s:
        try:
            if disable:
                row = disable_rule(s, principal.tenant_id, rule_id, principal.actor)
            else:
                row = update_rule(s, principal.tenant_id, rule_id, changes, principal.actor,
                                  expected_version=expected_version)
            return rule_dict(row)
        except RuleNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except RuleConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        except ValueError as exc:
            raise _unprocessable(exc) from None


@router.patch("/rules/{rule_id}", response_model=RuleOut,
              summary="Change a rule's channels, template, urgency, enabled or override_opt_out")
def rules_update(rule_id: RuleId, body: RulePatch,
                 principal: Annotated[Principal, Depends(require("rules:write", rule_scope))]
                 ) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    expected = changes.pop("expected_version", None)
    return _change(principal, rule_id, changes, expected)


@router.post("/rules/{rule_id}/disable", response_model=RuleOut,
             summary="Disable a rule: its scope is then notified on no channel")
def rules_disable(rule_id: RuleId,
                  principal: Annotated[Principal, Depends(require("rules:write", rule_scope))]
                  ) -> dict[str, Any]:
    return _change(principal, rule_id, {}, disable=True)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a rule: its scope falls back to less specific rules")
def rules_delete(rule_id: RuleId,
                 principal: Annotated[Principal, Depends(require("rules:write", rule_scope))]
                 ) -> Response:
    with session_scope() as s:
        try:
            delete_rule(s, principal.tenant_id, rule_id, principal.actor)
        except RuleNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=AuditPage,
            summary="Audit log, newest first, only entries the principal may read")
def audit_list(
    principal: Annotated[Principal, Depends(require("audit:read"))],
    resource: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    def visible(e: dict[str, Any]) -> bool:
        return bool(authorize(principal, f"{e['resource']}:read", e["region"], e["category"]))

    if resource_id is not None and "\x00" in resource_id:
        raise _unprocessable(ValueError("resource_id: no NUL characters"))
    with session_scope() as s:
        entries, cursor = list_entries(s, principal.tenant_id, visible=visible,
                                       resource=resource, resource_id=resource_id,
                                       before_id=before_id, limit=limit)
    return {"entries": entries, "next_before_id": cursor}
