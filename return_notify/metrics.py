"""Prometheus metrics of the workers and the API (placeholder hooks; see README)."""

from __future__ import annotations

from typing import Any


def observe_deliver(channel: str, outcome: Any) -> None:
    """Called by the deliver task after each batch with its ``DeliverOutcome``."""


def observe_ingest(result: Any) -> None:
    """Called by the ingest task after each batch with its ``IngestResult``."""
