"""Which channel object serves each channel in this process, built from settings."""

from __future__ import annotations

import threading

from return_notify.channels.base import Channel
from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings, get_settings
from return_notify.errors import ConfigurationError
from return_notify.storage.db import get_engine

_lock = threading.Lock()
_channels: dict[str, Channel] = {}


def build_channel(channel: str, settings: Settings) -> Channel:
    provider = {"email": settings.email_provider, "sms": settings.sms_provider}.get(
        channel, "sandbox"
    )
    if provider == "sandbox" or channel == "inapp":
        return SandboxChannel(
            channel,
            engine=get_engine() if settings.sandbox_record else None,
            latency_ms=settings.sandbox_latency_ms,
            transient_failure_rate=settings.sandbox_transient_failure_rate,
            permanent_failure_rate=settings.sandbox_permanent_failure_rate,
        )
    raise ConfigurationError(
        f"RSN_{'EMAIL' if channel == 'email' else 'SMS'}_PROVIDER={provider} is not available "
        "in this version; use 'sandbox'"
    )


def get_channel(channel: str) -> Channel:
    with _lock:
        ch = _channels.get(channel)
        if ch is None:
            ch = build_channel(channel, get_settings())
            _channels[channel] = ch
        return ch


def reset_channels() -> None:
    with _lock:
        for ch in _channels.values():
            ch.close()
        _channels.clear()
