"""The producer contract: ``ReturnEvent`` v1 and the ``Milestone`` enum (DESIGN §3).

Imported by producers inside retailers' backends, so it depends on pydantic only.
Unknown fields are rejected, not dropped: a typo in a producer must be loud.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from return_notify.errors import EventValidationError

SCHEMA_VERSION = 1


class Milestone(StrEnum):
    """Return milestones; the main line is in lifecycle order."""

    RETURN_INITIATED = "return_initiated"
    RETURN_APPROVED = "return_approved"
    LABEL_CREATED = "label_created"
    SHIPMENT_DISPATCHED = "shipment_dispatched"
    IN_TRANSIT = "in_transit"
    WAREHOUSE_RECEIVED = "warehouse_received"
    INSPECTION_COMPLETED = "inspection_completed"
    RESTOCKED = "restocked"
    REFUND_PROCESSED = "refund_processed"
    RETURN_COMPLETED = "return_completed"
    RETURN_REJECTED = "return_rejected"
    RETURN_CANCELLED = "return_cancelled"
    EXCEPTION = "exception"


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _check_phone(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("must be an E.164 number such as +14155550123")
    return value


def _check_email(value: str) -> str:
    if not _EMAIL.match(value) or len(value) > 254:
        raise ValueError("must be an email address such as ana@example.com")
    return value


def _check_locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError("must be a BCP 47 tag such as en-US or de")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone such as Europe/Berlin") from exc
    return value


Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", strip_whitespace=True)
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Customer(BaseModel):
    """The person who returns the item; only ``id`` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, AfterValidator(_check_email)] | None = None
    phone: Annotated[str, AfterValidator(_check_phone)] | None = None
    locale: Annotated[str, AfterValidator(_check_locale)] | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = None


class ReturnEvent(BaseModel):
    """One return milestone event, schema version 1."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "$id": "https://return-notify.dev/schema/return-event-v1.json",
            "title": "ReturnEvent",
        },
    )

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=1)
    event_id: ShortText = Field(description="Producer-unique; the idempotency key within a tenant")
    tenant: Slug = Field(description="The merchant or brand, a lowercase slug")
    return_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The return reference shown to the customer (RMA)"
    )
    milestone: Milestone
    occurred_at: AwareDatetime = Field(
        description="When the status changed in the source system (RFC 3339 with offset)"
    )
    customer: Customer
    region: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    product_category: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="Milestone details")
    source: Annotated[str, StringConstraints(max_length=64)] | None = None


MAX_DATA_BYTES = 16_384


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (schema v1 allows no extra fields)"
        out.append({"field": loc, "message": msg, "type": err["type"]})
    return out


def parse_event(raw: Any) -> ReturnEvent:
    """Validate a decoded JSON object (or a JSON string) into a ``ReturnEvent``.

    Raises ``EventValidationError`` with one entry per bad field.
    """
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise EventValidationError(
                [{"field": "(event)", "message": f"not valid JSON: {exc}", "type": "json"}]
            ) from None
    if not isinstance(raw, dict):
        raise EventValidationError(
            [{"field": "(event)", "message": "must be a JSON object", "type": "type"}]
        )
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    try:
        event = ReturnEvent.model_validate(raw)
    except ValidationError as exc:
        raise EventValidationError(_field_errors(exc), event_id=event_id) from None
    if len(json.dumps(event.data, default=str)) > MAX_DATA_BYTES:
        raise EventValidationError(
            [{"field": "data", "message": f"larger than {MAX_DATA_BYTES} bytes", "type": "size"}],
            event_id=event_id,
        )
    return event


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the v1 event, for producers in other languages."""
    schema = ReturnEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def occurred(event: ReturnEvent) -> datetime:
    return event.occurred_at
