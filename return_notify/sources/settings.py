"""Settings of the ways in from existing systems (``RSN_*``), kept apart until they join ``Settings``."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SourcesSettings(BaseSettings):
    """Carrier webhooks, YAML feed mappings and the Redis Stream listener."""

    model_config = SettingsConfigDict(
        env_prefix="RSN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

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
        default=1_048_576, ge=1024, description="largest carrier webhook body accepted"
    )


@lru_cache(maxsize=1)
def get_sources_settings() -> SourcesSettings:
    return SourcesSettings()


def reset_sources_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_sources_settings.cache_clear()
