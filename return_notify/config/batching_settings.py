"""The settings of adaptive batching: how a running task takes the messages waiting in its
queue, which channels an ingest task delivers itself, and the opt-in ingest gate.

Declared apart from ``settings.Settings`` (their subclass, the one settings object every
process reads) so that file stays readable; the ``RSN_`` prefix, the ``.env`` file and the
cache are ``Settings``'. Sections are marked ``# --- name ---`` like there, for the settings
reference (``python -m return_notify.devtools.reference_docs``).
"""

from __future__ import annotations

from pydantic import Field

from return_notify.config.history_settings import HistorySettings


class BatchingSettings(HistorySettings):
    """The adaptive batching section of ``Settings``."""

    # --- adaptive batching -----------------------------------------------------------------
    ingest_drain_events: int = Field(
        default=5000, ge=0, le=10_000,
        description="adaptive batching: a running ingest task also takes event messages "
        "waiting in its queue until it holds this many events (or within one message of "
        "it), and ingests them in one transaction (a lone event is never held back); 0: one "
        "message per task")
    ingest_gate_wait_ms: float = Field(
        default=0.0, ge=0, le=10_000,
        description="adaptive batching, trading latency for CPU: an ingest task that finds "
        "another batch of its worker in progress (its ingest or its inline deliveries) "
        "waits up to this long for it, then takes what arrived meanwhile as one batch "
        "(about 30 % less worker CPU per notification at a steady 200 events/s, a few "
        "milliseconds more latency); 0 (the default): pool processes never wait for each "
        "other")
    ingest_gate_backlog: int = Field(
        default=32, ge=0, le=100_000,
        description="adaptive batching: with at least this many event messages waiting, an "
        "ingest task does not wait for the worker's other ingest batch (a backlog: the pool "
        "processes ingest in parallel)")
    deliver_drain_ids: int = Field(
        default=2000, ge=0, le=5_000,
        description="adaptive batching: a running deliver task also takes deliver messages "
        "of its channel waiting in the queue until it holds this many deliveries (or within "
        "one message of it); 0: one message per task")
    ingest_inline_channels: str = Field(
        default="inapp,email,sms",
        pattern=r"^\s*((email|sms|inapp)\s*(,\s*(email|sms|inapp)\s*)*)?$",
        description="channels (comma-separated; empty: none) an ingest task delivers itself "
        "right after its commit instead of sending a deliver message, when its worker also "
        "consumes that channel's queue (a worker started for other queues sends the message "
        "as usual); saves a message and a hop per notification")
    ingest_inline_max: int = Field(
        default=16, ge=0, le=1000,
        description="email and SMS go inline only while the ingest batch holds at most this "
        "many deliveries of the channel: a larger batch means a backlog, whose deliver "
        "messages keep the priorities and spread the provider calls over the pool (in-app, "
        "which calls no provider, always goes inline); 0: email and SMS never inline")
