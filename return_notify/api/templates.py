"""Admin API for a tenant's branding and templates: ``/v1/admin/branding`` and
``/v1/admin/templates`` (versions, validation, rollback, preview, test-send).

Every route depends on :func:`template_permission`; it is the single place where a role
check (owner, admin, regional manager, ...) plugs in. Today any valid tenant API key may
use these routes for its own tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from return_notify.api.auth import Tenant, TenantAuth
from return_notify.branding import BRANDING_FIELDS, BrandingUpdate, get_branding, save_branding
from return_notify.storage.db import session_scope

router = APIRouter(prefix="/v1/admin", tags=["templates"])

Action = Literal["read", "write", "send"]


def authorize(principal: TenantAuth, action: Action) -> None:
    """Raise ``HTTPException(403)`` when ``principal`` may not ``action`` templates.

    No-op until roles exist: every tenant API key administers its own tenant.
    """


def template_permission(action: Action) -> Callable[[TenantAuth], TenantAuth]:
    def dependency(tenant: Tenant) -> TenantAuth:
        authorize(tenant, action)
        return tenant
    return dependency


Reader = Annotated[TenantAuth, Depends(template_permission("read"))]
Writer = Annotated[TenantAuth, Depends(template_permission("write"))]
Sender = Annotated[TenantAuth, Depends(template_permission("send"))]


class BrandingView(BrandingUpdate):
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


class KeyIn(BaseModel):
    channel: str = Field(description="email, sms or inapp")
    milestone: str = Field(description="a milestone, or * for every milestone")
    part: str = Field(description="email: subject, text, html; sms: text; inapp: title, text")
    locale: str = Field(default="en", description="en, de, de-AT, ...")


class OverrideIn(KeyIn):
    source: str = Field(max_length=64_000, description="Jinja template (sandboxed)")
    note: str | None = Field(default=None, max_length=500)
    activate: bool = True


class RollbackIn(KeyIn):
    version: int = Field(ge=0, description="version to activate; 0 = the packaged default")


class OverrideOut(BaseModel):
    id: int
    channel: str
    milestone: str
    part: str
    locale: str
    version: int
    active: bool
    created_by: str | None
    created_at: datetime
    note: str | None = None
    source: str | None = None
    warnings: list[str] = []


class ValidationOut(BaseModel):
    ok: bool
    problems: list[str]
    warnings: list[str]


class PreviewIn(BaseModel):
    channel: Literal["email", "sms", "inapp"] = "email"
    milestone: str
    locale: str | None = Field(default=None, description="customer locale, e.g. de-AT")
    drafts: dict[str, Annotated[str, Field(max_length=64_000)]] = Field(
        default_factory=dict, description="unsaved sources by part, shown instead of the stored ones")
    minimal: bool = Field(default=False, description="sample event without optional data")


class TestSendIn(PreviewIn):
    to: str = Field(max_length=254, description="email address or E.164 number")


class RenderedOut(BaseModel):
    subject: str | None
    text: str
    html: str | None


def _key(body: KeyIn) -> Any:
    from return_notify.template_validation import check_key

    key, problems = check_key(body.channel, body.milestone, body.part, body.locale)
    if key is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail={"problems": problems})
    return key


def _rejected(result: Any) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail={
        "message": "template rejected", "problems": result.problems, "warnings": result.warnings})


def _check_milestone(milestone: str) -> None:
    from return_notify.template_samples import MILESTONES

    if milestone not in MILESTONES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"unknown milestone {milestone!r}")


@router.get("/branding", response_model=BrandingView, summary="The tenant's branding")
def read_branding(tenant: Reader) -> dict[str, Any]:
    with session_scope() as s:
        b = get_branding(s, tenant.tenant_id)
    return {**{k: getattr(b, k) for k in BRANDING_FIELDS}, "revision": b.revision,
            "updated_at": b.updated_at, "updated_by": b.updated_by}


@router.put("/branding", response_model=BrandingView,
            summary="Replace the tenant's branding (omitted fields go back to the default)")
def write_branding(body: BrandingUpdate, tenant: Writer) -> dict[str, Any]:
    with session_scope() as s:
        b = save_branding(s, tenant.tenant_id, body, f"api:{tenant.key_prefix}")
    return {**{k: getattr(b, k) for k in BRANDING_FIELDS}, "revision": b.revision,
            "updated_at": b.updated_at, "updated_by": b.updated_by}


@router.get("/templates", response_model=list[OverrideOut],
            summary="The tenant's overrides: active ones, or every version with all=true")
def list_templates(tenant: Reader, all_versions: bool = Query(default=False, alias="all")
                   ) -> list[dict[str, Any]]:
    from return_notify.template_store import list_overrides

    with session_scope() as s:
        rows = list_overrides(s, tenant.tenant_id, include_inactive=all_versions, with_source=True)
    return [r.as_dict() for r in rows]


@router.get("/templates/history", response_model=list[OverrideOut],
            summary="Every version of one override, newest first")
def template_history(tenant: Reader, body: Annotated[KeyIn, Depends()]) -> list[dict[str, Any]]:
    from return_notify.template_store import override_history

    key = _key(body)
    with session_scope() as s:
        return [r.as_dict() for r in override_history(s, tenant.tenant_id, key)]


@router.post("/templates/validate", response_model=ValidationOut,
             summary="Check a template without storing it")
def validate_template(body: OverrideIn, tenant: Reader) -> dict[str, Any]:
    from return_notify.template_store import render_limits
    from return_notify.template_validation import validate_override

    key = _key(body)
    with session_scope() as s:
        branding = get_branding(s, tenant.tenant_id)
    return validate_override(key, body.source, branding, tenant.slug, render_limits()).as_dict()


@router.post("/templates", response_model=OverrideOut, status_code=status.HTTP_201_CREATED,
             summary="Validate and store a new version of an override",
             responses={422: {"description": "The template was rejected: detail.problems"}})
def create_template(body: OverrideIn, tenant: Writer) -> dict[str, Any]:
    from return_notify.template_store import OverrideRejected, save_override

    key = _key(body)
    try:
        with session_scope() as s:
            version, result = save_override(s, tenant.tenant_id, key, body.source,
                                            f"api:{tenant.key_prefix}", body.note, body.activate)
    except OverrideRejected as exc:
        raise _rejected(exc.result) from None
    return {**version.as_dict(), "warnings": result.warnings}


@router.post("/templates/rollback", summary="Activate an earlier version (0: packaged default)")
def rollback_template(body: RollbackIn, tenant: Writer) -> dict[str, Any]:
    from return_notify.template_store import OverrideRejected, rollback_override

    key = _key(body)
    try:
        with session_scope() as s:
            target = rollback_override(s, tenant.tenant_id, key, body.version)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except OverrideRejected as exc:
        raise _rejected(exc.result) from None
    return {"active_version": target.version if target else 0}


@router.post("/templates/preview", response_model=RenderedOut,
             summary="Render the tenant's message with sample data (and optional drafts)")
def preview_template(body: PreviewIn, tenant: Reader) -> dict[str, Any]:
    from return_notify.config.settings import get_settings
    from return_notify.rendering import TemplateRenderError
    from return_notify.template_preview import preview, resolve_tenant

    _check_milestone(body.milestone)
    with session_scope() as s:
        info = resolve_tenant(s, tenant.slug)
    try:
        r = preview(info, body.channel, body.milestone, body.locale, body.drafts,
                    full=not body.minimal, public_base_url=get_settings().public_base_url)
    except TemplateRenderError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return {"subject": r.subject, "text": r.text, "html": r.html}


@router.post("/templates/test-send", status_code=status.HTTP_202_ACCEPTED,
             summary="Send the previewed message, marked [TEST], to an address or number",
             responses={502: {"description": "The provider refused or failed"}})
def test_send_template(body: TestSendIn, tenant: Sender) -> dict[str, Any]:
    from return_notify.config.settings import get_settings
    from return_notify.errors import DeliveryError
    from return_notify.masking import mask
    from return_notify.rendering import TemplateRenderError
    from return_notify.template_preview import resolve_tenant, test_send

    _check_milestone(body.milestone)
    with session_scope() as s:
        info = resolve_tenant(s, tenant.slug)
    try:
        result, rendered = test_send(info, body.channel, body.milestone, body.to, get_settings(),
                                     body.locale, drafts=body.drafts)
    except (ValueError, TemplateRenderError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    except DeliveryError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            detail=f"{type(exc).__name__}: {exc}") from None
    return {"provider": result.provider, "provider_message_id": result.provider_message_id,
            "to": mask(body.to), "subject": rendered.subject}
