"""Feed mapping files: parse and check ``<source>.yaml``, and find the mapping for a source.

Built-in examples live in ``return_notify/sources/mappings/``; operators add their own in
the directories of ``RSN_SOURCE_MAPPING_DIRS`` (a file there replaces a built-in of the same
``source``). Files are re-read when they change, so adding a source needs no restart.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from decimal import Decimal
from pathlib import Path as FilePath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from return_notify.config.settings import get_settings
from return_notify.events import Milestone
from return_notify.sources.mapping import FieldSpec, MappingError, SourceMapping, mapping_key
from return_notify.sources.paths import PathSyntaxError, compile_path, compile_template, is_template

log = logging.getLogger(__name__)

BUILTIN_DIR = FilePath(__file__).resolve().parent / "mappings"
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CUSTOMER_KEYS = ("id", "name", "email", "phone", "locale", "timezone")
TOP_TARGETS = ("event_id", "return_id", "milestone", "occurred_at", "region",
               "product_category", "source")
REQUIRED_TARGETS = frozenset({"event_id", "return_id", "milestone", "occurred_at", "customer.id"})
TYPES = ("string", "int", "float", "bool", "decimal", "datetime", "date", "locale")
SPEC_KEYS = {"path", "template", "value", "map", "unmapped", "type", "format", "timezone",
             "divide_by", "default", "required"}
TOP_KEYS = {"source", "description", "tenant", "tenants", "records", "fields", "defaults",
            "constants", "customer_from_return"}


def _check_target(target: Any) -> str | None:
    if not isinstance(target, str):
        return f"field name {target!r} must be a string"
    if target in TOP_TARGETS or target == "data":
        return None
    head, _, rest = target.partition(".")
    if head == "customer" and rest in CUSTOMER_KEYS:
        return None
    if head == "data" and rest and all(rest.split(".")):
        return None
    return (f"unknown event field {target!r} (use {', '.join(TOP_TARGETS)}, "
            f"customer.<{'|'.join(CUSTOMER_KEYS)}> or data.<name>; the tenant comes from the API key)")


def _spec(target: str, raw: Any, errors: list[str]) -> FieldSpec | None:
    where = f"fields.{target}"
    if isinstance(raw, str):
        raw = {"template": raw} if is_template(raw) else {"path": raw}
    if not isinstance(raw, dict):
        errors.append(f"{where}: give a path, a template or an object (fixed values go in constants)")
        return None
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        errors.append(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(SPEC_KEYS)})")
    kw: dict[str, Any] = {"target": target, "required": bool(raw.get("required",
                                                                    target in REQUIRED_TARGETS))}
    try:
        paths = raw.get("path")
        if paths is not None:
            kw["paths"] = tuple(compile_path(str(p)) for p in
                                (paths if isinstance(paths, list) else [paths]))
        if raw.get("template") is not None:
            kw["template"] = compile_template(str(raw["template"]))
    except PathSyntaxError as exc:
        errors.append(f"{where}: {exc}")
        return None
    if "value" in raw:
        kw["value"] = raw["value"]
    if sum(k in raw for k in ("path", "template", "value")) != 1:
        errors.append(f"{where}: give exactly one of path, template, value")
    if raw.get("type") is not None and raw["type"] not in TYPES:
        errors.append(f"{where}: type must be one of {', '.join(TYPES)}")
    for key in ("type", "format", "timezone"):
        if raw.get(key) is not None:
            kw[key] = str(raw[key])
    if kw.get("timezone"):
        try:
            ZoneInfo(kw["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"{where}: unknown time zone {kw['timezone']!r}")
    if raw.get("divide_by") is not None:
        kw["divide_by"] = Decimal(str(raw["divide_by"]))
    for key in ("default", "unmapped"):
        if key in raw:
            kw[key] = raw[key]
    if "map" in raw:
        if not isinstance(raw["map"], dict) or not raw["map"]:
            errors.append(f"{where}: map must be a non-empty table of code: value")
        else:
            kw["table"] = {mapping_key(k): v for k, v in raw["map"].items()}
            if target == "milestone":
                bad = [v for v in kw["table"].values() if v is not None and v not in set(Milestone)]
                if bad:
                    errors.append(f"{where}: not milestones: {bad} (use ~ for 'no event')")
    return FieldSpec(**kw)


def parse_mapping(doc: Any, where: str = "(mapping)") -> SourceMapping:
    """A ``SourceMapping`` from a decoded YAML document, or ``MappingError``."""
    if not isinstance(doc, dict):
        raise MappingError(where, ["the file must be a YAML mapping (key: value)"])
    errors = [f"unknown top-level key {k!r}" for k in sorted(set(doc) - TOP_KEYS)]
    source = doc.get("source")
    if not isinstance(source, str) or not SLUG.fullmatch(source):
        errors.append("source: a lowercase slug such as 'acme-wms' is required")
    fields_raw = doc.get("fields")
    specs: list[FieldSpec] = []
    if not isinstance(fields_raw, dict) or not fields_raw:
        errors.append("fields: a table of event field: path/spec is required")
        fields_raw = {}
    for target, raw in fields_raw.items():
        problem = _check_target(target)
        if problem:
            errors.append(f"fields: {problem}")
        elif (spec := _spec(target, raw, errors)) is not None:
            specs.append(spec)
    for key in ("defaults", "constants"):
        for target in doc.get(key) or {}:
            if (problem := _check_target(target)) is not None:
                errors.append(f"{key}: {problem}")
    if "event_id" not in fields_raw:
        errors.append("fields.event_id is required: a template of ids from the payload makes "
                      "resending safe (e.g. 'wms-{receipt.id}-{status}')")
    customer_from_return = bool(doc.get("customer_from_return", False))
    if not customer_from_return and "customer.id" not in fields_raw and "customer.id" not in (
            doc.get("constants") or {}):
        errors.append("fields.customer.id is required (or set customer_from_return: true)")
    records = None
    if doc.get("records") is not None:
        try:
            records = compile_path(str(doc["records"]))
        except PathSyntaxError as exc:
            errors.append(f"records: {exc}")
    tenants = doc.get("tenants")
    if errors:
        raise MappingError(where, errors)
    return SourceMapping(
        source=str(source), fields=tuple(specs), description=str(doc.get("description") or ""),
        records=records, defaults=dict(doc.get("defaults") or {}),
        constants=dict(doc.get("constants") or {}), tenant=doc.get("tenant"),
        tenants=frozenset(map(str, tenants)) if tenants else None,
        customer_from_return=customer_from_return, file=where,
    )


def load_mapping_file(path: FilePath) -> SourceMapping:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(str(path), [f"cannot read: {exc}"]) from None
    return parse_mapping(doc, str(path))


_lock = threading.Lock()
_cache: dict[str, Any] = {"signature": None, "mappings": {}, "errors": []}


def mapping_dirs() -> list[FilePath]:
    extra = [FilePath(p).expanduser() for p in
             get_settings().source_mapping_dirs.split(os.pathsep) if p.strip()]
    return [BUILTIN_DIR, *extra]


def _files() -> list[FilePath]:
    files: list[FilePath] = []
    for directory in mapping_dirs():
        if directory.is_dir():
            files.extend(sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]))
    return files


def load_all() -> tuple[dict[str, SourceMapping], list[MappingError]]:
    """Every usable mapping by source name, and the files that could not be used.

    Cached until a file is added, removed or modified (one ``stat`` per file per call).
    """
    files = _files()
    signature = tuple((str(f), f.stat().st_mtime_ns) for f in files if f.exists())
    with _lock:
        if _cache["signature"] == signature:
            return dict(_cache["mappings"]), list(_cache["errors"])
    mappings: dict[str, SourceMapping] = {}
    errors: list[MappingError] = []
    for f in files:
        try:
            m = load_mapping_file(f)
        except MappingError as exc:
            errors.append(exc)
            log.warning("mapping %s is not usable: %s", f, "; ".join(exc.problems))
            continue
        mappings[m.source] = m  # later directories win
    with _lock:
        _cache.update(signature=signature, mappings=mappings, errors=errors)
    return dict(mappings), list(errors)


def get_mapping(source: str) -> SourceMapping | None:
    return load_all()[0].get(source)


def resolve(name_or_file: str) -> SourceMapping:
    """A mapping by source name, or straight from a YAML file (to try one before installing
    it); raises ``MappingError`` (file problems) or ``LookupError`` (no such source)."""
    candidate = FilePath(name_or_file)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_mapping_file(candidate)
    found = get_mapping(name_or_file)
    if found is None:
        broken = [e for e in load_all()[1] if FilePath(e.where).stem == name_or_file]
        if broken:
            raise broken[0]
        known = ", ".join(sorted(load_all()[0])) or "none"
        raise LookupError(f"no mapping for source {name_or_file!r} (known: {known})")
    return found
