"""The HTTP API's settings: tokens, webhook verification, request limits.

Declared apart from ``settings.Settings`` (their subclass, the one settings object every
process reads) so that file stays readable; the ``RSN_`` prefix, the ``.env`` file and the
cache are ``Settings``'. Sections are marked ``# --- name ---`` like there, for the settings
reference (``python -m return_notify.devtools.reference_docs``).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class ApiSettings(BaseSettings):
    """The HTTP API's sections of ``Settings``."""

    # --- HTTP API: tokens, webhooks, unsubscribe ----------------------------------------
    inbox_token_secret: SecretStr | None = Field(
        default=None,
        description="Master secret for customer inbox tokens; each tenant gets a secret derived "
        "from it (`return-notify inbox secret`), so one tenant cannot mint another's tokens",
    )
    unsubscribe_secret: SecretStr | None = Field(
        default=None, description="Key sealing one-click unsubscribe tokens (server side only)"
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None, description="SendGrid signed Event Webhook verification key (base64 DER)"
    )
    webhook_replay_window_s: int = Field(
        default=300, ge=1, description="Reject signed webhooks whose timestamp is further off"
    )
    inbox_token_ttl_s: int = Field(default=3600, ge=60, description="Default inbox token lifetime")
    api_publish_timeout_s: float = Field(
        default=2.0, gt=0, description="How long POST /v1/events retries an unreachable broker"
    )
    inbox_token_max_ttl_s: int = Field(
        default=86_400, ge=60, description="Longest inbox token lifetime: a token expiring "
        "later than this from now is refused (and not minted)"
    )
    inbox_stream_max_per_customer: int = Field(
        default=3, ge=1, le=100, description="Live inbox streams open at once per customer "
        "(every tab and device); one more answers 429"
    )
    inbox_stream_max_per_process: int = Field(
        default=500, ge=1, description="Live inbox streams open at once per API process (all "
        "share one Redis pub/sub connection); one more answers 503"
    )

    # --- HTTP API: request limits (docs/security.md "What is bounded") -----------------
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body of every route but "
        "those below, refused with 413 while it streams in"
    )
    api_events_max_body_bytes: int = Field(
        default=24 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest body of POST /v1/events "
        "and /v1/sources/{source}/events (up to 1000 events), read only after the API key "
        "checks out"
    )
    api_max_json_depth: int = Field(
        default=32, ge=4, le=512, description="Deepest nesting of arrays and objects in a JSON "
        "body (events are held to 16 by the contract); deeper answers 422"
    )
    api_render_rate: str = Field(
        default="30/m:10", description="Template previews, validations, saves and rollbacks "
        "per principal key (RATE:BURST, a Redis token bucket); past it 429 with Retry-After"
    )
    api_test_send_rate: str = Field(
        default="10/h:3", description="Template test sends per principal key (RATE:BURST)"
    )
    api_test_send_tenant_rate: str = Field(
        default="30/h:5", description="Template test sends per tenant, every principal together"
    )
    api_verification_rate: str = Field(
        default="5/h:3", description="Test recipient verification codes sent per tenant"
    )
    sms_help_text: str = Field(
        default="Return status updates. Reply STOP to opt out, START to opt back in. "
        "Msg&data rates may apply.",
        description="Reply to HELP/INFO on the inbound SMS webhook",
    )
