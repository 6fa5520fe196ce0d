"""Admin API for the addresses template test sends may go to: ``/v1/admin/test-recipients``.

An address becomes a test recipient once its owner proves it: ``POST`` sends a six-digit
code to it (a fixed text; nothing the tenant wrote), ``POST …/verify`` with that code marks
it verified. Codes expire after 15 minutes and five wrong tries; codes sent are limited
per tenant (``RSN_API_VERIFICATION_RATE``). A suppressed address (unsubscribed, bounced,
STOPped) gets no code. The role needs ``templates:send`` (as for test sends; the list is
tenant-wide, whatever the principal's scope); addresses are shown masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from return_notify.api.limits import GuardedRoute
from return_notify.api.quotas import VERIFICATION, take
from return_notify.api.rbac import Principal, require
from return_notify.core.masking import mask
from return_notify.storage.db import session_scope

router = APIRouter(prefix="/v1/admin", tags=["templates"], route_class=GuardedRoute)

Sender = Annotated[Principal, Depends(require("templates:send"))]


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "sms"]
    address: str = Field(min_length=3, max_length=254,
                         description="An email address, or an E.164 number for sms")


class VerifyIn(RecipientIn):
    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


class RecipientOut(BaseModel):
    id: int
    channel: str
    address: str
    verified: bool
    verified_at: datetime | None
    created_by: str | None
    created_at: datetime


def _bad(exc: ValueError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))


@router.get("/test-recipients", response_model=list[RecipientOut],
            summary="The tenant's test recipients (addresses masked)")
def list_test_recipients(principal: Sender) -> list[dict[str, Any]]:
    from return_notify.policy.verified_recipients import list_recipients

    with session_scope() as s:
        rows = list_recipients(s, principal.tenant_id)
    return [{**r.as_dict(), "address": mask(r.address)} for r in rows]


@router.post("/test-recipients", status_code=status.HTTP_202_ACCEPTED,
             summary="Send a verification code to an address (it becomes a test recipient "
                     "once the code comes back)",
             responses={409: {"description": "The address is on the suppression list"},
                        429: {"description": "Too many codes sent for this tenant"},
                        502: {"description": "The provider refused or failed"}})
def add_test_recipient(body: RecipientIn, principal: Sender) -> dict[str, Any]:
    from return_notify.access.audit import record
    from return_notify.config.settings import get_settings
    from return_notify.errors import DeliveryError
    from return_notify.pipeline.presend import sms_sender
    from return_notify.pipeline.test_sends import send_verification_code
    from return_notify.policy.suppression import is_suppressed
    from return_notify.policy.verified_recipients import normalise, start_verification

    settings = get_settings()
    try:
        address = normalise(body.channel, body.address)
    except ValueError as exc:
        raise _bad(exc) from None
    with session_scope() as s:
        reason = is_suppressed(s, principal.tenant_id, body.channel, address,
                               sender=sms_sender(settings) if body.channel == "sms" else None)
    if reason is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=(
            f"{mask(address)} is on the suppression list ({reason}): it gets no message"))
    take(VERIFICATION, principal.tenant_id)
    with session_scope() as s:
        rid, code, verified = start_verification(s, principal.tenant_id, body.channel, address,
                                                 principal.name)
        record(s, principal.tenant_id, principal.actor, "test_recipient.code_sent",
               "templates", rid, after={"channel": body.channel, "address": mask(address)})
    try:
        send_verification_code(principal.tenant, body.channel, address, code, settings)
    except DeliveryError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            detail=f"{type(exc).__name__}: {exc}") from None
    return {"id": rid, "channel": body.channel, "address": mask(address),
            "verified": verified, "code_sent": True}


@router.post("/test-recipients/verify", response_model=RecipientOut,
             summary="Enter the code an address received: it becomes a verified test recipient",
             responses={422: {"description": "Wrong, expired or used-up code"}})
def verify_test_recipient(body: VerifyIn, principal: Sender) -> dict[str, Any]:
    from return_notify.access.audit import record
    from return_notify.policy.verified_recipients import (
        VerificationError,
        confirm,
        list_recipients,
        normalise,
    )

    try:
        address = normalise(body.channel, body.address)
    except ValueError as exc:
        raise _bad(exc) from None
    try:
        with session_scope() as s:
            confirm(s, principal.tenant_id, body.channel, address, body.code)
    except VerificationError as exc:
        raise _bad(exc) from None
    with session_scope() as s:
        row = next(r for r in list_recipients(s, principal.tenant_id)
                   if (r.channel, r.address) == (body.channel, address))
        record(s, principal.tenant_id, principal.actor, "test_recipient.verified", "templates",
               row.id, after={"channel": body.channel, "address": mask(address)})
    return {**row.as_dict(), "address": mask(row.address)}


@router.delete("/test-recipients/{recipient_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove a test recipient")
def delete_test_recipient(principal: Sender,
                          recipient_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    from return_notify.access.audit import record
    from return_notify.policy.verified_recipients import remove

    with session_scope() as s:
        if not remove(s, principal.tenant_id, recipient_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                detail=f"no test recipient {recipient_id}")
        record(s, principal.tenant_id, principal.actor, "test_recipient.removed", "templates",
               recipient_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
