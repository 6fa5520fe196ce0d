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

from return_notify.addresses import AddressError, normalize_email, normalize_phone
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


_LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", re.ASCII)


def _check_phone(value: str) -> str:
    """E.164, normalised (``return_notify.addresses``): what is stored is what is looked up."""
    try:
        return normalize_phone(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def _check_email(value: str) -> str:
    """One plain address, parsed and normalised (``return_notify.addresses``)."""
    try:
        return normalize_email(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def _check_locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise ValueError("must be a BCP 47 tag such as en-US or de")
    return value


_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,30}(?:/[A-Za-z0-9_+\-]{1,30}){0,2}", re.ASCII)


def _check_timezone(value: str) -> str:
    # the name first: ZoneInfo opens a file named after it (a long name raised OSError);
    # the same rule as core.zones, which this module cannot import (core imports it)
    try:
        if _ZONE.fullmatch(value):
            ZoneInfo(value)
            return value
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise ValueError("must be an IANA time zone such as Europe/Berlin")


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
#: deepest nesting of objects/arrays accepted anywhere in an event
MAX_DEPTH = 16
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def _plainly_clean(value: Any) -> bool:
    """True when ``_text_problems`` has nothing to report, found without its paths: the
    texts (keys included) gathered level by level and searched once. False sends the
    event through the detailed walk (which also decides keys that are not text)."""
    texts: list[str] = []
    level, depth = [value], 0
    while level:
        deeper: list[Any] = []
        for node in level:
            if isinstance(node, str):
                texts.append(node)
                continue
            if isinstance(node, dict):
                if depth >= MAX_DEPTH:
                    return False
                for key, item in node.items():
                    if not isinstance(key, str):
                        return False
                    texts.append(key)
                    deeper.append(item)
            elif isinstance(node, list):
                if depth >= MAX_DEPTH:
                    return False
                deeper += node
        level, depth = deeper, depth + 1
    return _BAD_TEXT.search("\n".join(texts)) is None


def _text_problems(value: Any, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    """NUL characters and lone UTF-16 surrogates anywhere (keys included), and nesting
    deeper than ``MAX_DEPTH``: neither JSON in PostgreSQL nor UTF-8 can hold them."""
    if len(out) >= 10:
        return
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            out.append({"field": path or "(event)", "type": "text",
                        "message": "contains a NUL character or a lone surrogate (not text)"})
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            out.append({"field": path or "(event)", "type": "depth",
                        "message": f"nested deeper than {MAX_DEPTH} levels"})
            return
        for key, item in value.items():
            shown = _BAD_TEXT.sub("\ufffd", str(key))[:64]  # a field name fit to echo back
            name = f"{path}.{shown}" if path else shown
            if isinstance(key, str) and _BAD_TEXT.search(key):
                out.append({"field": path or "(event)", "type": "text",
                            "message": "a key contains a NUL character or a lone surrogate"})
            _text_problems(item, name, depth + 1, out)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            out.append({"field": path or "(event)", "type": "depth",
                        "message": f"nested deeper than {MAX_DEPTH} levels"})
            return
        for i, item in enumerate(value):
            _text_problems(item, f"{path}[{i}]", depth + 1, out)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _BAD_TEXT.sub("\ufffd", ".".join(str(p)[:64] for p in err["loc"])) or "(event)"
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
    problems: list[dict[str, Any]] = []
    if not _plainly_clean(raw):
        _text_problems(raw, "", 0, problems)
    if problems:
        raise EventValidationError(
            problems, event_id=event_id if event_id and not _BAD_TEXT.search(event_id) else None)
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
