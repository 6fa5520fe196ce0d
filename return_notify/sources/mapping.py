"""Declarative feed mappings: a WMS's or ERP's own JSON → our events, one YAML file per source.

A mapping names, for each event field, where its value is in the source's payload (a path,
see ``paths``), how to convert it, and for the milestone a status-code table; ``defaults``
fill gaps and ``constants`` are always set. ``apply`` never raises on bad input: every record
yields an event or a list of problems (a mapping error, then the contract's own errors).
The YAML format is documented in docs/sources.md ("Adding a source") and in ``mappings/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from return_notify.errors import EventValidationError
from return_notify.events import parse_event
from return_notify.sources.paths import MISSING, Path, Template

MAX_RECORDS = 1000
PLACEHOLDER_CUSTOMER = "(from the return's earlier events)"



class MappingError(ValueError):
    """A mapping file that cannot be used; ``problems`` has one line per mistake."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.where = where
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """Why one record does not give a valid event; ``field`` is the event field."""

    index: int
    field: str
    message: str
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "field": self.field, "message": self.message}
        return out | ({"path": self.path} if self.path else {})


@dataclass
class MappedRecord:
    index: int
    event: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    skipped: str | None = None  # the status maps to no milestone: nothing to tell
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event": self.event, "skipped": self.skipped,
                "problems": [p.as_dict() for p in self.problems], "notes": self.notes}


@dataclass(frozen=True)
class FieldSpec:
    target: str
    paths: tuple[Path, ...] = ()
    template: Template | None = None
    value: Any = MISSING
    table: dict[str, Any] | None = None
    unmapped: Any = MISSING
    type: str | None = None
    format: str | None = None
    timezone: str | None = None
    divide_by: Decimal | None = None
    default: Any = MISSING
    required: bool = False

    @property
    def where(self) -> str | None:
        return self.template.text if self.template else (
            " | ".join(p.text for p in self.paths) or None)


@dataclass(frozen=True)
class SourceMapping:
    source: str
    fields: tuple[FieldSpec, ...]
    description: str = ""
    records: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    tenants: frozenset[str] | None = None
    customer_from_return: bool = False
    file: str | None = None

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def records_of(self, payload: Any) -> list[Any]:
        if self.records is not None:
            found = self.records.get(payload, payload)
            if found is MISSING:
                return []
            return found if isinstance(found, list) else [found]
        return payload if isinstance(payload, list) else [payload]

    def apply(self, payload: Any, tenant: str) -> list[MappedRecord]:
        """Map every record of ``payload`` for ``tenant``; see the module docstring."""
        return [self._apply_one(i, rec, payload, tenant)
                for i, rec in enumerate(self.records_of(payload)[:MAX_RECORDS])]

    def _apply_one(self, index: int, record: Any, root: Any, tenant: str) -> MappedRecord:
        out = MappedRecord(index)
        if not isinstance(record, dict):
            out.problems.append(Problem(index, "(record)", "a record must be a JSON object"))
            return out
        event: dict[str, Any] = {}
        reported: set[str] = set()
        for spec in self.fields:
            value, problem = _evaluate(spec, record, root)
            if problem is not None:
                out.problems.append(Problem(index, spec.target, problem, spec.where))
                reported.add(spec.target)
            elif value is None and spec.target == "milestone":
                out.skipped = "the status maps to no milestone (nothing to tell the customer)"
                return out
            elif value is not MISSING and value is not None:
                _put(event, spec.target, value)
        for target, value in self.defaults.items():
            if _get(event, target) is MISSING:
                _put(event, target, value)
        for target, value in self.constants.items():
            _put(event, target, value)
        event.setdefault("source", self.source)
        event["tenant"] = tenant
        placeholder = False
        if self.customer_from_return and _get(event, "customer.id") is MISSING:
            _put(event, "customer.id", PLACEHOLDER_CUSTOMER)
            placeholder = True
            out.notes.append("customer: taken from the return's earlier events when published")
        try:
            out.event = parse_event(event).model_dump(mode="json", exclude_none=True)
        except EventValidationError as exc:
            for err in exc.errors:
                if err["field"] not in reported:
                    out.problems.append(Problem(index, err["field"], err["message"]))
            out.event = event
        if placeholder and out.event is not None:
            out.event["customer"].pop("id", None)
        return out


# ----------------------------------------------------------------- evaluation ---------

def _evaluate(spec: FieldSpec, record: Any, root: Any) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(MISSING, problem)``; None is a mapped "no value"."""
    if spec.value is not MISSING:
        value = spec.value
    elif spec.template is not None:
        value, missing = spec.template.render(record, root)
        if value is None:
            if spec.default is not MISSING:
                return spec.default, None
            return MISSING, f"no value for {', '.join('{' + m + '}' for m in missing)}"
    else:
        value = MISSING
        for path in spec.paths:
            found = path.get(record, root)
            if found is not MISSING and found is not None and found != "" and found != []:
                value = found
                break
    if value is MISSING:
        if spec.default is not MISSING:
            return spec.default, None
        return MISSING, (f"no value at {spec.where}" if spec.required else None)
    try:
        value = _convert(spec, value)
    except (ValueError, TypeError, InvalidOperation, ArithmeticError) as exc:
        return MISSING, f"{value!r} is not a valid {spec.type}: {exc}"
    if spec.table is not None:
        key = mapping_key(value)
        if key in spec.table:
            return spec.table[key], None
        if spec.unmapped is not MISSING:
            return spec.unmapped, None
        known = ", ".join(sorted(spec.table)[:20])
        return MISSING, f"{key!r} is not in the mapping's table (known: {known})"
    return value, None


def mapping_key(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _convert(spec: FieldSpec, value: Any) -> Any:
    kind = spec.type
    if kind is None:
        return value
    if isinstance(value, (dict, list)):
        raise TypeError("got a JSON object or array")
    if kind == "string":
        return mapping_key(value).strip()
    if kind == "int":
        return int(str(value).strip())
    if kind == "float":
        return float(value)
    if kind == "bool":
        text = mapping_key(value).strip().lower()
        if text not in {"true", "false", "1", "0", "yes", "no", "y", "n"}:
            raise ValueError("expected true/false")
        return text in {"true", "1", "yes", "y"}
    if kind == "decimal":
        amount = Decimal(str(value).strip())
        return str(amount / spec.divide_by if spec.divide_by else amount)
    if kind == "locale":
        return str(value).strip().replace("_", "-")
    moment = _datetime(value, spec.format, spec.timezone)
    return moment.date().isoformat() if kind == "date" else moment.isoformat()


def _datetime(value: Any, fmt: str | None, tz: str | None) -> datetime:
    if fmt in ("epoch", "epoch_ms"):
        seconds = float(value) / (1000 if fmt == "epoch_ms" else 1)
        return datetime.fromtimestamp(seconds, UTC)
    text = str(value).strip()
    moment = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    if moment.tzinfo is None:
        if not tz:
            raise ValueError("no UTC offset; give the mapping field a 'timezone'")
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment


def _put(event: dict[str, Any], target: str, value: Any) -> None:
    node = event
    *parents, leaf = target.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _get(event: dict[str, Any], target: str) -> Any:
    node: Any = event
    for part in target.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node
