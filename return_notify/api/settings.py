"""Settings of the HTTP side (``RSN_*`` like the rest), kept apart until they join ``Settings``.

Importable without FastAPI: the email channel (token for unsubscribe links) and the
retailer-facing ``mint_inbox_token`` helper read them too.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Secrets and knobs of the API; every secret is a ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(
        env_prefix="RSN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

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
    sms_help_text: str = Field(
        default="Return status updates. Reply STOP to opt out, START to opt back in. "
        "Msg&data rates may apply.",
        description="Reply to HELP/INFO on the inbound SMS webhook",
    )


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()


def reset_api_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_api_settings.cache_clear()
