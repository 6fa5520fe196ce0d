"""Events that ingest cannot take: recorded in ``rejected_events`` with the reasons and a
copy of the payload that PostgreSQL can always store, however broken the input was."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from return_notify.errors import EventValidationError
from return_notify.storage.models import RejectedEvent

log = logging.getLogger(__name__)

__all__ = ["MAX_REJECTED_PAYLOAD_CHARS", "record_rejected", "reject_poison", "sanitize_payload"]

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: a rejected payload is kept up to this size (as JSON); a bigger one is cut to its start
MAX_REJECTED_PAYLOAD_CHARS = 64_000


def _clean_text(value: str) -> str:
    """``value`` as PostgreSQL can store it: NUL and lone surrogates become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value


def sanitize_payload(raw: Any, depth: int = 0) -> Any:
    """A JSON value that PostgreSQL accepts whatever ``raw`` was: strings cleaned, nesting
    cut at 32 levels, non-JSON values replaced by their (cleaned) ``repr``."""
    if isinstance(raw, str):
        return _clean_text(raw)
    if raw is None or isinstance(raw, (bool, int)):
        return raw
    if isinstance(raw, float):
        return raw if raw == raw and raw not in (float("inf"), float("-inf")) else repr(raw)
    if depth >= 32:
        return "(nested too deep)"
    if isinstance(raw, dict):
        return {_clean_text(str(k)): sanitize_payload(v, depth + 1) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return [sanitize_payload(v, depth + 1) for v in raw]
    return _clean_text(repr(raw)[:10_000])


def _storable_payload(raw: Any) -> Any:
    clean = sanitize_payload(raw)
    text_ = json.dumps(clean)
    if len(text_) <= MAX_REJECTED_PAYLOAD_CHARS:
        return clean
    return {"truncated": True, "size_chars": len(text_),
            "start": text_[:MAX_REJECTED_PAYLOAD_CHARS]}


def record_rejected(session: Session, raw: Any, err: EventValidationError) -> None:
    tenant = raw.get("tenant") if isinstance(raw, dict) else None
    session.execute(pg_insert(RejectedEvent).values(
        tenant=_clean_text(str(tenant))[:128] if tenant is not None else None,
        event_id=_clean_text(str(err.event_id))[:256] if err.event_id else None,
        errors=sanitize_payload(err.errors), payload=_storable_payload(raw),
    ))
    log.warning("rejected event %s: %s", _clean_text(str(err.event_id or "?"))[:256], err)


def reject_poison(session_factory: Any, raw: Any, exc: BaseException) -> None:
    """One event that ingest cannot store: record why (never its SQL parameters, which
    hold personal data) and a storable copy of it."""
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    reason = f"the event could not be stored ({type(exc).__name__})"
    log.error("event %s could not be stored (%s); recorded in rejected_events",
              _clean_text(str(event_id or "?"))[:256], type(exc).__name__)
    with session_factory() as session:
        record_rejected(session, raw, EventValidationError(
            [{"field": "(event)", "message": reason, "type": "db"}],
            event_id=str(event_id) if event_id else None))


