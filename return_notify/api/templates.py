"""Admin API for a tenant's branding and templates: ``/v1/admin/branding`` and
``/v1/admin/templates`` (versions, validation, rollback, preview, test-send).

Authenticated with a principal key (``rsnp_…``, see ``api/rbac.py``) like the rules API; a
tenant ingest key gets 401 (it used to be accepted here: the admin API is pre-1.0). Every
route checks ``principals.authorize`` with the override's scope — its ``region`` and
``category`` (``None`` = ANY; the variant does not matter for permissions):

=============================  ===================  =======================================
route                          action               scope
=============================  ===================  =======================================
``GET /branding``              ``branding:read``    ANY: every principal
``PUT /branding``              ``branding:write``   ANY/ANY: owners and admins only
``GET /templates``             ``templates:read``   rows filtered to what the caller reads
``GET /templates/history``     ``templates:read``   the key's region/category
``POST /templates/validate``   ``templates:read``   the key's (stores nothing)
``POST /templates``            ``templates:write``  the key's
``POST /templates/rollback``   ``templates:write``  the key's
``POST /templates/preview``    ``templates:read``   the event region/category rendered for
``POST /templates/test-send``  ``templates:send``   like write: viewers never
=============================  ===================  =======================================

Read = the scope overlaps the principal's (an ANY template applies in ``EU`` too), write
and send = the scope lies within it; so an ``EU`` manager gets 403 on a ``US`` template and
an ``electronics`` manager on an ``apparel`` one. Saves, rollbacks, branding changes and
test sends are written to the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import AfterValidator, BaseModel, Field

from return_notify.access.principals import authorize
from return_notify.api.limits import GuardedRoute
from return_notify.api.quotas import RENDER, TEST_SEND, TEST_SEND_TENANT, take
from return_notify.api.rbac import Principal, enforce, require
from return_notify.core.regions import normalize_category, normalize_region
from return_notify.storage.db import session_scope
from return_notify.templating.branding import BRANDING_FIELDS, BrandingUpdate, get_branding
from return_notify.templating.scope import TemplateScope, listing_filter, normalize_variant

router = APIRouter(prefix="/v1/admin", tags=["templates"], route_class=GuardedRoute)

RegionIn = Annotated[str | None, AfterValidator(normalize_region)]
CategoryIn = Annotated[str | None, AfterValidator(normalize_category)]
VariantIn = Annotated[str | None, AfterValidator(normalize_variant)]


def _can(action: str) -> Any:
    return Depends(require(action))


BrandingReader = Annotated[Principal, _can("branding:read")]
BrandingWriter = Annotated[Principal, _can("branding:write")]
Reader = Annotated[Principal, _can("templates:read")]
Writer = Annotated[Principal, _can("templates:write")]
Sender = Annotated[Principal, _can("templates:send")]


class BrandingView(BrandingUpdate):
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


class ScopeIn(BaseModel):
    region: RegionIn = Field(None, max_length=32,
                             description="e.g. EU (covers EU-DE) or US; omitted, null or * = ANY")
    category: CategoryIn = Field(None, max_length=64,
                                 description="Product category, e.g. apparel; omitted = ANY")
    variant: VariantIn = Field(None, max_length=64, description=(
        "Template variant a rule names (e.g. eu_formal); omitted or 'default' = the default"))

    def scope(self) -> TemplateScope:
        return TemplateScope(self.region, self.category, self.variant)


class KeyIn(ScopeIn):
    channel: str = Field(description="email, sms or inapp")
    milestone: str = Field(description="a milestone, or * for every milestone")
    part: str = Field(description="email: subject, text, html; sms: text; inapp: title, text")
    locale: str = Field(default="en", description="en, de, de-AT, ...")


class OverrideIn(KeyIn):
    source: str = Field(max_length=64_000, description="Jinja template (sandboxed)")
    note: str | None = Field(default=None, max_length=500)
    activate: bool = True


class RollbackIn(KeyIn):
    version: int = Field(ge=0, le=2**31 - 1,
                         description="version to activate; 0 = none (next candidate applies)")


class OverrideOut(BaseModel):
    id: int
    channel: str
    milestone: str
    part: str
    locale: str
    region: str | None
    category: str | None
    variant: str | None
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


class PreviewIn(ScopeIn):
    """``region``/``category`` are the sample event's (``EU-DE`` uses ``EU`` templates);
    ``variant`` is the template a rule names."""

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


_SANDBOXED: dict[int | str, dict[str, Any]] = {
    422: {"description": "The template failed, or passed a CPU, memory or time limit"},
    429: {"description": "Too many previews and checks by this key; retry after Retry-After"},
    503: {"description": "Every template sandbox of this server is busy; retry shortly"},
}


def _unprocessable(detail: Any) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def _key(body: KeyIn) -> Any:
    from return_notify.templating.validation import check_key

    key, problems = check_key(body.channel, body.milestone, body.part, body.locale)
    if key is None:
        raise _unprocessable({"problems": problems})
    return key


def _rejected(result: Any) -> HTTPException:
    return _unprocessable({"message": "template rejected", "problems": result.problems,
                           "warnings": result.warnings})


def _check_milestone(milestone: str) -> None:
    from return_notify.templating.samples import MILESTONES

    if milestone not in MILESTONES:
        raise _unprocessable(f"unknown milestone {milestone!r}")


def history_key(
    channel: Annotated[str, Query(max_length=16, description="email, sms or inapp")],
    milestone: Annotated[str, Query(max_length=32, description="a milestone, or *")],
    part: Annotated[str, Query(max_length=16)],
    locale: Annotated[str, Query(max_length=35)] = "en",
    region: Annotated[str | None, Query(max_length=32, description="omitted or * = ANY")] = None,
    category: Annotated[str | None, Query(max_length=64, description="omitted or * = ANY")]
    = None,
    variant: Annotated[str | None, Query(max_length=64, description="omitted = default")] = None,
) -> KeyIn:
    try:
        return KeyIn(channel=channel, milestone=milestone, part=part, locale=locale,
                     region=normalize_region(region), category=normalize_category(category),
                     variant=normalize_variant(variant))
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None


def _branding_view(b: Any) -> dict[str, Any]:
    return {**{k: getattr(b, k) for k in BRANDING_FIELDS}, "revision": b.revision,
            "updated_at": b.updated_at, "updated_by": b.updated_by}


@router.get("/branding", response_model=BrandingView,
            summary="The tenant's branding (any principal)")
def read_branding(principal: BrandingReader) -> dict[str, Any]:
    enforce(principal, "branding:read", None, None)
    with session_scope() as s:
        return _branding_view(get_branding(s, principal.tenant_id))


@router.put("/branding", response_model=BrandingView,
            summary="Replace the tenant's branding (owners and admins; omitted fields go back "
                    "to the default)")
def write_branding(body: BrandingUpdate, principal: BrandingWriter) -> dict[str, Any]:
    from return_notify.templating.versions import save_branding_audited

    enforce(principal, "branding:write", None, None)
    with session_scope() as s:
        return _branding_view(save_branding_audited(s, principal.tenant_id, body,
                                                    principal.actor))


@router.get("/templates", response_model=list[OverrideOut],
            summary="Overrides the principal may read: active ones, or every version with all=true")
def list_templates(
    principal: Reader,
    all_versions: Annotated[bool, Query(alias="all")] = False,
    region: Annotated[str | None, Query(max_length=32, description="Exact; '*' = ANY only")]
    = None,
    category: Annotated[str | None, Query(max_length=64, description="Exact; '*' = ANY only")]
    = None,
    variant: Annotated[str | None, Query(max_length=64,
                                         description="Exact; 'default' = default only")] = None,
) -> list[dict[str, Any]]:
    from return_notify.templating.versions import list_overrides

    try:
        keep = listing_filter(region, category, variant)
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    with session_scope() as s:
        rows = list_overrides(s, principal.tenant_id, include_inactive=all_versions,
                              with_source=True)
    return [r.as_dict() for r in rows
            if keep(r) and authorize(principal, "templates:read", r.region, r.category)]


@router.get("/templates/history", response_model=list[OverrideOut],
            summary="Every version of one override, newest first")
def template_history(principal: Reader, body: Annotated[KeyIn, Depends(history_key)]
                     ) -> list[dict[str, Any]]:
    from return_notify.templating.versions import override_history

    enforce(principal, "templates:read", body.region, body.category)
    key = _key(body)
    with session_scope() as s:
        return [r.as_dict() for r in override_history(s, principal.tenant_id, key, body.scope())]


@router.post("/templates/validate", response_model=ValidationOut,
             summary="Check a template without storing it (in the limited sandbox process)",
             responses=_SANDBOXED)
def validate_template(body: OverrideIn, principal: Reader) -> dict[str, Any]:
    from return_notify.pipeline.preview import validate_isolated
    from return_notify.templating.store import render_limits

    enforce(principal, "templates:read", body.region, body.category)
    key = _key(body)
    take(RENDER, principal.id)
    with session_scope() as s:
        branding = get_branding(s, principal.tenant_id)
    return validate_isolated(key, body.source, branding, principal.tenant,
                             render_limits()).as_dict()


@router.post("/templates", response_model=OverrideOut, status_code=status.HTTP_201_CREATED,
             summary="Validate and store a new version of an override",
             responses={422: {"description": "The template was rejected: detail.problems"}})
def create_template(body: OverrideIn, principal: Writer) -> dict[str, Any]:
    from return_notify.pipeline.preview import validate_isolated
    from return_notify.templating.versions import OverrideRejected, save_override

    enforce(principal, "templates:write", body.region, body.category)
    key = _key(body)
    take(RENDER, principal.id)
    try:
        with session_scope() as s:
            version, result = save_override(s, principal.tenant_id, key, body.source,
                                            principal.actor, body.note, body.activate,
                                            body.scope(), validate=validate_isolated)
    except OverrideRejected as exc:
        raise _rejected(exc.result) from None
    return {**version.as_dict(), "warnings": result.warnings}


@router.post("/templates/rollback",
             summary="Activate an earlier version (0: none, the next candidate applies)")
def rollback_template(body: RollbackIn, principal: Writer) -> dict[str, Any]:
    from return_notify.pipeline.preview import validate_isolated
    from return_notify.templating.versions import OverrideRejected, rollback_override

    enforce(principal, "templates:write", body.region, body.category)
    key = _key(body)
    take(RENDER, principal.id)
    try:
        with session_scope() as s:
            target = rollback_override(s, principal.tenant_id, key, body.version, body.scope(),
                                       principal.actor, validate=validate_isolated)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except OverrideRejected as exc:
        raise _rejected(exc.result) from None
    return {"active_version": target.version if target else 0}


def _tenant_for(principal: Principal, body: PreviewIn) -> Any:
    """The principal's tenant as a message of the body's scope and variant sees it."""
    from return_notify.pipeline.preview import PreviewTenant, resolve_tenant

    with session_scope() as s:
        info = resolve_tenant(s, principal.tenant)
    if info.templates is None:
        return info
    return PreviewTenant(info.slug, info.name,
                         info.templates.scoped(body.region, body.category, body.variant))


@router.post("/templates/preview", response_model=RenderedOut,
             summary="Render the tenant's message with sample data (and optional drafts), "
                     "in the limited sandbox process", responses=_SANDBOXED)
def preview_template(body: PreviewIn, principal: Reader) -> dict[str, Any]:
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.preview import preview_isolated
    from return_notify.templating.render import TemplateRenderError

    enforce(principal, "templates:read", body.region, body.category)
    _check_milestone(body.milestone)
    take(RENDER, principal.id)
    info = _tenant_for(principal, body)
    try:
        r = preview_isolated(info, body.channel, body.milestone, body.locale, body.drafts,
                             full=not body.minimal,
                             public_base_url=get_settings().public_base_url)
    except TemplateRenderError as exc:
        raise _unprocessable(str(exc)) from None
    return {"subject": r.subject, "text": r.text, "html": r.html}


@router.post("/templates/test-send", status_code=status.HTTP_202_ACCEPTED,
             summary="Send the previewed message, marked [TEST], to a verified test "
                     "recipient (never a suppressed one)",
             responses={409: {"description": "Not a verified test recipient, or suppressed"},
                        429: {"description": "Too many test sends; retry after Retry-After"},
                        502: {"description": "The provider refused or failed"}})
def test_send_template(body: TestSendIn, principal: Sender) -> dict[str, Any]:
    from return_notify.access.audit import record
    from return_notify.config.settings import get_settings
    from return_notify.core.masking import mask
    from return_notify.errors import DeliveryError
    from return_notify.pipeline.preview import preview_isolated
    from return_notify.pipeline.test_sends import TestSendRefused, test_send
    from return_notify.templating.render import TemplateRenderError

    enforce(principal, "templates:send", body.region, body.category)
    _check_milestone(body.milestone)
    take(TEST_SEND, principal.id)
    take(TEST_SEND_TENANT, principal.tenant_id)
    info = _tenant_for(principal, body)
    try:
        with session_scope() as s:
            result, rendered = test_send(s, info, body.channel, body.milestone, body.to,
                                         get_settings(), body.locale, drafts=body.drafts,
                                         renderer=preview_isolated)
    except TestSendRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except (ValueError, TemplateRenderError) as exc:
        raise _unprocessable(str(exc)) from None
    except DeliveryError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            detail=f"{type(exc).__name__}: {exc}") from None
    out = {"provider": result.provider, "provider_message_id": result.provider_message_id,
           "to": mask(body.to), "subject": rendered.subject}
    with session_scope() as s:
        record(s, principal.tenant_id, principal.actor, "template.test_send", "templates", None,
               region=body.region, category=body.category,
               after={"channel": body.channel, "milestone": body.milestone,
                      "locale": body.locale, "variant": body.variant,
                      "drafts": sorted(body.drafts), **out})
    return out
