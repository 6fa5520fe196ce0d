"""The one settings object, read from ``RSN_*`` environment variables or a ``.env`` file.

Every setting of every process lives here (one class, one cache, one ``reset_settings``;
the adaptive batching section is declared in ``batching_settings.BatchingSettings``, the
history and insights sections in ``history_settings.HistorySettings`` and the HTTP API's
in ``api_settings.ApiSettings``, its bases);
sections are marked ``# --- name ---`` and the settings reference in the documentation is
generated from this class (``python -m return_notify.devtools.reference_docs``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from return_notify.config.batching_settings import BatchingSettings


class Settings(BatchingSettings):
    """Every setting has a default that works for a developer on one machine."""

    model_config = SettingsConfigDict(
        env_prefix="RSN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- services -----------------------------------------------------------------------
    broker_url: str | None = Field(
        default=None, description="Redis URL of the Celery broker; unset: demo, bench and the "
        "tests start an embedded Redis"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of PostgreSQL "
        "(postgresql://user:pw@host:5432/db); unset: embedded PostgreSQL"
    )
    redis_key_prefix: str = Field(
        default="", description="Prefix for every Redis key (several deployments or test runs "
        "on one Redis)"
    )
    redis_sentinel_master: str = Field(
        default="mymaster", description="with a sentinel:// RSN_BROKER_URL: the name the "
        "Sentinels know the Redis primary by"
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="with a sentinel:// RSN_BROKER_URL: the Sentinels' own "
        "password (requirepass of the Sentinels; the URL's password is the Redis servers')"
    )
    db_pool_size: int = Field(
        default=5, ge=1, description="PostgreSQL connections each process keeps open"
    )
    db_max_overflow: int = Field(
        default=5, ge=0, description="connections a process may open beyond "
        "RSN_DB_POOL_SIZE under load (closed when returned); a process holds at most "
        "pool size + overflow"
    )
    db_statement_timeout_ms: int = Field(
        default=60_000, ge=0, description="PostgreSQL statement_timeout of every connection "
        "(a runaway query is cancelled, not left holding locks); 0: none. `db upgrade` "
        "lifts it for the migrations"
    )

    # --- providers ----------------------------------------------------------------------
    email_provider: Literal["sendgrid", "smtp", "sandbox"] = Field(
        default="sandbox", description="email provider (RSN_EMAIL_PROVIDERS, when set, replaces it)"
    )
    sms_provider: Literal["twilio", "sandbox"] = Field(default="sandbox", description="SMS provider")
    sendgrid_api_key: SecretStr | None = Field(default=None, description="SendGrid API key")
    sendgrid_base_url: str = Field(
        default="https://api.sendgrid.com",
        description="SendGrid API base URL (a regional endpoint or a local test server)",
    )
    email_from: str = Field(default="returns@example.com", description="sender address")
    smtp_url: SecretStr | None = Field(
        default=None, description="smtp://user:pw@host:587?starttls=1 or smtps://...:465"
    )
    twilio_account_sid: str | None = Field(default=None, description="Twilio account SID")
    twilio_auth_token: SecretStr | None = Field(default=None, description="Twilio auth token")
    twilio_from: str | None = Field(default=None, description="Twilio sender number")
    twilio_base_url: str = Field(default="https://api.twilio.com", description="Twilio API base URL")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="public URL of the HTTP service (status page, provider callbacks, "
        "unsubscribe links; Twilio signatures are checked against it)",
    )
    provider_timeout_s: float = Field(
        default=10.0, description="timeout of every provider call; keep it well above the "
        "provider's p99 latency (a timed-out call the provider accepted is sent again)"
    )
    sms_fallback_to_email: bool = Field(
        default=True, description="an undeliverable SMS (STOP, invalid number) goes by email"
    )
    inapp_provider: Literal["inbox", "sandbox"] = Field(
        default="inbox", description="inbox: PostgreSQL inbox and live Server-Sent Events"
    )
    provider_concurrency: int = Field(
        default=16, ge=1, le=256, description="provider calls in flight per worker process "
        "(a thread pool per batch, network providers; also the keep-alive connections kept per "
        "provider); worker --profile delivery sets 64"
    )
    email_from_name: str | None = Field(
        default=None, description="Display name in From (\"Acme Returns\"); unset: address only"
    )
    email_reply_to: str | None = Field(default=None, description="Reply-To address; unset: none")
    email_providers: str = Field(
        default="",
        description="Email failover order, e.g. 'sendgrid,smtp': the next provider is tried when "
        "one fails transiently; set, it replaces RSN_EMAIL_PROVIDER",
    )
    unsubscribe_mailto: str | None = Field(
        default=None, description="Address for the mailto: List-Unsubscribe variant; unset: https only"
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="MG... Messaging Service; used when RSN_TWILIO_FROM is unset"
    )
    sms_max_segments: int = Field(
        default=3, ge=1, le=10, description="longer SMS are cut to fit (a trailing URL is kept)"
    )
    sms_unicode: Literal["transliterate", "keep"] = Field(
        default="transliterate",
        description="transliterate: letters with a GSM-7 equivalent are replaced (sáb → sab, "
        "ç → c, « → \"), so a localised SMS stays in 160-character GSM-7 segments whatever "
        "the date or name; keep: accents kept, and one such letter sends the whole SMS as "
        "UCS-2 (70 characters a segment)",
    )
    breaker_trip_after: int = Field(
        default=5, ge=0, description="a network provider (Twilio, SendGrid, SMTP) pauses after "
        "this many consecutive transient failures (per worker process); 0: no circuit breaker"
    )
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, le=3600, description="how long a tripped provider pauses (longer if "
        "the failure's Retry-After asks, at most RSN_BACKOFF_MAX_S) before one trial call "
        "decides whether it resumes"
    )

    # --- sandbox provider (demo, tests, benchmarks) ---------------------------------------
    sandbox_latency_ms: float = Field(default=0.0, description="simulated latency per message")
    sandbox_transient_failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of sends that fail transiently"
    )
    sandbox_permanent_failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of sends that fail permanently"
    )
    sandbox_record: bool = Field(
        default=True, description="record each received message in sandbox_messages"
    )

    # --- rate limits --------------------------------------------------------------------
    rate_limits: str = Field(
        default="",
        description="global limits (Redis token buckets, shared by every worker), e.g. "
        "'provider:twilio=100/s,provider:sendgrid=10000/m,tenant:*=50/s,tenant:acme=200/s:400' "
        "(RATE:BURST)",
    )

    # --- templates ----------------------------------------------------------------------
    template_render_timeout_ms: float = Field(
        default=250.0, description="time limit of one part of a tenant template override"
    )
    template_max_ops: int = Field(
        default=200_000, description="loop steps, calls and filters per part of an override"
    )
    template_cache_ttl_s: float = Field(
        default=60.0, description="a worker re-reads branding and overrides at least this often"
    )
    template_validation_budget_ms: float = Field(
        default=1000.0, gt=0, description="time all the sample renders of one validation may "
        "take together (a template for every milestone is rendered 26 times); past it the "
        "template is refused as too slow"
    )
    template_sandbox_cpu_s: float = Field(
        default=2.0, gt=0, le=60, description="API previews and validations of tenant templates "
        "run in a child process killed after this much CPU (RLIMIT_CPU, whole seconds, rounded "
        "up)"
    )
    template_sandbox_memory_mb: int = Field(
        default=256, ge=32, le=4096, description="memory the child process of a preview or "
        "validation may map beyond its start (RLIMIT_AS); an allocation past it fails"
    )
    template_sandbox_wall_s: float = Field(
        default=5.0, gt=0, le=120, description="a preview or validation child still running "
        "after this long is killed; also how long a request waits for a free sandbox"
    )
    template_sandbox_concurrency: int = Field(
        default=2, ge=1, le=64, description="preview and validation child processes at once "
        "per API process (more requests wait, then get 503)"
    )

    # --- pipeline -----------------------------------------------------------------------
    ingest_batch_size: int = Field(
        default=200, ge=1, le=1000, description="events per broker message (producer side)"
    )
    deliver_batch_size: int = Field(
        default=200, ge=1, le=1000, description="delivery ids per deliver message"
    )
    max_attempts: int = Field(default=6, ge=1, description="tries before a delivery is dead")
    rate_limited_wait_s: float = Field(
        default=1.0, gt=0, le=3600,
        description="a delivery a provider answered 429 without Retry-After waits about this "
        "long (x1-1.5, jittered); a 429 never spends one of the tries")
    rate_limited_max_s: float = Field(
        default=86_400.0, gt=0,
        description="a delivery a provider keeps answering 429 goes dead this long after it "
        "was created (the time budget of provider rate limits; tries are not spent on them)")
    rate_limited_storm: int = Field(
        default=5, ge=1,
        description="this many 429s in a row from one provider (in one worker process) "
        "pause that provider for every worker for the wait it asked (the limiter learns); "
        "a lone 429 only delays its own delivery")
    backoff_base_s: float = Field(
        default=2.0, description="backoff: the wait before try n is uniform in "
        "[0, min(RSN_BACKOFF_MAX_S, base * 2^(n-1))] (full jitter); a provider's Retry-After "
        "is a floor"
    )
    backoff_max_s: float = Field(default=3600.0, description="backoff cap (see RSN_BACKOFF_BASE_S)")
    max_countdown_s: float = Field(
        default=60.0, description="retries due within this ride a Celery countdown; later ones "
        "wait in PostgreSQL for the sweeper"
    )
    lease_s: float = Field(
        default=300.0, description="a pending/sending delivery untouched this long is "
        "re-enqueued by the sweeper; must exceed RSN_TASK_TIME_LIMIT_S"
    )
    sweep_interval_s: float = Field(default=15.0, description="how often beat runs the sweeper")
    visibility_timeout_s: int = Field(
        default=300, description="Redis re-delivers a message unacked this long (a killed "
        "worker's, one held when the connection dropped); must exceed max countdown + task "
        "time limit (checked at start)"
    )

    # --- workers ------------------------------------------------------------------------
    task_events: bool = Field(
        default=True, description="send task events (Flower's live view); costs ~1/3 of a no-op"
    )
    worker_concurrency: int | None = Field(
        default=None, description="reserved; pass -c to return-notify worker"
    )
    task_soft_time_limit_s: int = Field(default=120, description="per-task soft time limit")
    task_time_limit_s: int = Field(
        default=180, description="per-task hard time limit; also how long a warm shutdown may take"
    )
    max_tasks_per_child: int = Field(
        default=10_000, description="recycle pool processes after this many tasks"
    )
    max_memory_per_child_mib: int = Field(
        default=0, ge=0,
        description="a pool process whose memory (RSS) passed this after a task is replaced "
        "by a fresh one, forked from the warm parent in milliseconds (Celery's "
        "worker_max_memory_per_child); 0: two limits from the warm worker's size, "
        "measured at start: RSN_POOL_MEMORY_HARD_PCT after a task, "
        "RSN_POOL_MEMORY_GROWTH_PCT once idle")
    pool_memory_growth_pct: int = Field(
        default=10, ge=5, le=1000,
        description="with RSN_MAX_MEMORY_PER_CHILD_MIB=0: a pool process that grew this far "
        "beyond the warm worker's size is replaced by a fresh fork once the worker has been "
        "idle for 4 s (after a backlog, memory comes back; never in the middle of one)")
    pool_memory_hard_pct: int = Field(
        default=100, ge=5, le=1000,
        description="with RSN_MAX_MEMORY_PER_CHILD_MIB=0: a pool process that grew this far "
        "beyond the warm worker's size is replaced after its current task, even in a backlog")

    # --- operations: metrics, Flower, logs, data protection ------------------------------
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="worker Prometheus endpoint port (the main process serves every pool "
        "process's metrics); unset: worker metrics off",
    )
    metrics_address: str = Field(
        default="127.0.0.1", description="bind address of the worker metrics endpoint"
    )
    api_metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="`return-notify api`: port of its Prometheus endpoint, on "
        "RSN_METRICS_ADDRESS, apart from the public API port (every --workers process summed); "
        "unset: API metrics not served",
    )
    metrics_dir: str | None = Field(
        default=None,
        description="prometheus_client multiprocess directory (wiped at worker start); "
        "unset: PROMETHEUS_MULTIPROC_DIR, else a fresh temporary directory per worker",
    )
    metrics_per_tenant: bool = Field(
        default=True, description="also count deliveries per tenant (one series per tenant)"
    )
    flower_basic_auth: SecretStr | None = Field(
        default=None, description="user:password for Flower (comma-separate several)"
    )
    log_json: bool = Field(
        default=False, description="one JSON object per log line, with event_id/delivery_id"
    )
    retention_days: int = Field(
        default=30, ge=0,
        description="purge rendered content and personal data older than this; 0: never",
    )
    retention_at: str = Field(
        default="03:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="time of day (UTC, HH:MM) beat sends the daily retention purge, to the "
        "retention queue",
    )
    retention_time_limit_s: int = Field(
        default=3600, ge=60, description="hard time limit of one retention run (soft: a "
        "minute less); it resumes where it stopped the next day"
    )

    # --- ways in: carrier webhooks, feed mappings, the Redis Stream listener -------------
    source_mapping_dirs: str = Field(
        default="",
        description="Extra directories of <source>.yaml feed mappings (os.pathsep-separated); "
        "a mapping here replaces a built-in example of the same name",
    )
    stream_key: str = Field(
        default="events:stream",
        description="Redis Stream that non-Python producers XADD to (after RSN_REDIS_KEY_PREFIX)",
    )
    stream_group: str = Field(default="return-notify", description="consumer group of listeners")
    stream_batch: int = Field(default=100, ge=1, le=1000, description="entries per XREADGROUP")
    stream_block_ms: int = Field(
        default=1000, ge=10, le=30_000, description="XREADGROUP BLOCK; also the SIGTERM latency"
    )
    stream_claim_idle_s: float = Field(
        default=60.0, gt=0, description="XAUTOCLAIM entries a consumer has held unacked this long"
    )
    stream_claim_interval_s: float = Field(default=10.0, gt=0, description="how often to claim")
    stream_max_deliveries: int = Field(
        default=5, ge=1, description="an entry claimed more often than this goes to the dead letter"
    )
    stream_dead_maxlen: int = Field(
        default=100_000, ge=100, description="approximate length cap of the dead-letter stream"
    )
    stream_max_entry_bytes: int = Field(
        default=1_048_576, ge=1024, description="a bigger entry is dead-lettered, not decoded"
    )
    stream_trim: bool = Field(
        default=True,
        description="XTRIM entries every consumer group has read and acknowledged (set false "
        "if something else reads the stream without a consumer group)",
    )
    carrier_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1024 * 1024,
        description="largest carrier webhook body accepted"
    )

    # --- customer preferences, quiet hours, throttles (tenant defaults) ------------------
    quiet_hours_enabled: bool = Field(
        default=True, description="hold SMS/in-app inside the recipient's quiet hours")
    quiet_hours_allowed: str = Field(
        default="08:00-21:00", description="default allowed window, recipient's local time")
    quiet_hours_channels: str = Field(default="sms,inapp", description="channels held back")
    throttle_min_intervals: str = Field(
        default="in_transit:sms=6h",
        description="per return: 'milestone:channel=duration' (or '*:channel'), comma-separated")
    digest_windows: str = Field(
        default="", description="per channel digest window, e.g. 'email=2m,sms=2m'; empty: off")
    preferences_cache_s: float = Field(default=30.0, ge=0, description="per-process cache TTL")
    policy_cache_s: float = Field(default=30.0, ge=0, description="per-process cache TTL")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the demo change the environment)."""
    get_settings.cache_clear()
