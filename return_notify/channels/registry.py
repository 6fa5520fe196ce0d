"""Which channel object serves each channel in this process, built from settings.

email: ``RSN_EMAIL_PROVIDERS`` (a failover order such as ``sendgrid,smtp``) when set,
else ``RSN_EMAIL_PROVIDER``; sms: ``RSN_SMS_PROVIDER``; the sandbox is the default for
both. A provider whose credentials are missing raises ``ConfigurationError`` naming the
environment variables to set. Provider SDKs are imported only when their provider is used.

Every network provider (SendGrid, SMTP, Twilio) is built behind its own circuit breaker
(``channels.breaker``; ``RSN_BREAKER_TRIP_AFTER``, ``RSN_BREAKER_COOLDOWN_S``), also when it
is the only provider of its channel; a failover chain is a chain of guarded providers. The
channel objects, and so the breakers' state, live per process (``get_channel``).
"""

from __future__ import annotations

import threading

from return_notify.channels.base import Channel
from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings, get_settings
from return_notify.errors import ConfigurationError
from return_notify.storage.db import get_engine

_lock = threading.Lock()
_channels: dict[str, Channel] = {}

EMAIL_PROVIDERS = ("sendgrid", "smtp", "sandbox")
SMS_PROVIDERS = ("twilio", "sandbox")


def _sandbox(channel: str, settings: Settings) -> Channel:
    return SandboxChannel(
        channel,
        engine=get_engine() if settings.sandbox_record else None,
        latency_ms=settings.sandbox_latency_ms,
        transient_failure_rate=settings.sandbox_transient_failure_rate,
        permanent_failure_rate=settings.sandbox_permanent_failure_rate,
    )


def _require(provider: str, missing: list[str]) -> None:
    if missing:
        raise ConfigurationError(f"{provider} is configured but {' and '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not set")


def email_provider_order(settings: Settings) -> list[str]:
    """``RSN_EMAIL_PROVIDERS`` split on commas, else ``[RSN_EMAIL_PROVIDER]``; validated."""
    order = [p.strip().lower() for p in settings.email_providers.split(",") if p.strip()]
    if not order:
        return [settings.email_provider]
    unknown = [p for p in order if p not in EMAIL_PROVIDERS]
    if unknown or len(set(order)) != len(order):
        raise ConfigurationError(
            f"RSN_EMAIL_PROVIDERS={settings.email_providers!r}: use distinct names from "
            f"{', '.join(EMAIL_PROVIDERS)} (e.g. 'sendgrid,smtp')"
        )
    return order


def compliance_problems(settings: Settings) -> list[str]:
    """Why this configuration may not send real email (empty when it may).

    A real email provider (SendGrid, SMTP) needs ``RSN_UNSUBSCRIBE_SECRET``: without it
    every email would go out without ``List-Unsubscribe`` (RFC 8058 one-click), which the
    large mailbox providers require of bulk senders and which the law expects of
    notification mail. Refusing to start is explicit; a secret provisioned silently would
    have to be shared by every API and worker process and kept across restarts, or the
    links already sent would stop working.
    """
    real = [p for p in email_provider_order(settings) if p != "sandbox"]
    if real and settings.unsubscribe_secret is None:
        return [f"RSN_EMAIL_PROVIDER{'S' if settings.email_providers else ''} names "
                f"{', '.join(real)} (real email) but RSN_UNSUBSCRIBE_SECRET is not set: every "
                "email would go out without its one-click unsubscribe link. Set it to a long "
                "random value, the same for the API and every worker (e.g. `python -c "
                "'import secrets; print(secrets.token_urlsafe(32))'`)."]
    return []


def _guard(channel: Channel, settings: Settings) -> Channel:
    """``channel`` behind a circuit breaker of its own (``RSN_BREAKER_TRIP_AFTER=0``: none)."""
    if settings.breaker_trip_after == 0:
        return channel
    from return_notify.channels.breaker import BreakerChannel, CircuitBreaker
    from return_notify.observability.metrics import observe_breaker

    observe_breaker(channel.provider, False)  # the gauge's series exists before any trip
    return BreakerChannel(channel, CircuitBreaker(
        channel.provider, settings.breaker_trip_after, settings.breaker_cooldown_s,
        max_pause_s=settings.backoff_max_s, listener=observe_breaker,
    ))


def _email(provider: str, settings: Settings) -> Channel:
    if provider == "sandbox":
        return _sandbox("email", settings)
    from return_notify.channels.smtp_email import EmailIdentity

    identity = EmailIdentity(
        from_email=settings.email_from, from_name=settings.email_from_name,
        reply_to=settings.email_reply_to, public_base_url=settings.public_base_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )
    if provider == "sendgrid":
        key = settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else ""
        _require("sendgrid", [] if key else ["RSN_SENDGRID_API_KEY"])
        from return_notify.channels.sendgrid_email import SendGridChannel

        return _guard(SendGridChannel(key, identity, base_url=settings.sendgrid_base_url,
                                      timeout_s=settings.provider_timeout_s), settings)
    url = settings.smtp_url.get_secret_value() if settings.smtp_url else ""
    _require("smtp", [] if url else ["RSN_SMTP_URL"])
    from return_notify.channels.smtp_email import SmtpChannel

    return _guard(SmtpChannel(url, identity, timeout_s=settings.provider_timeout_s), settings)


def _sms(settings: Settings) -> Channel:
    if settings.sms_provider == "sandbox":
        return _sandbox("sms", settings)
    sid = settings.twilio_account_sid or ""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    missing = [name for name, value in (
        ("RSN_TWILIO_ACCOUNT_SID", sid), ("RSN_TWILIO_AUTH_TOKEN", token),
    ) if not value]
    if not settings.twilio_from and not settings.twilio_messaging_service_sid:
        missing.append("RSN_TWILIO_FROM (or RSN_TWILIO_MESSAGING_SERVICE_SID)")
    _require("twilio", missing)
    from return_notify.channels.twilio_sms import TwilioChannel

    return _guard(TwilioChannel(
        sid, token,
        from_number=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        base_url=settings.twilio_base_url, public_base_url=settings.public_base_url,
        timeout_s=settings.provider_timeout_s, max_segments=settings.sms_max_segments,
    ), settings)


def build_channel(channel: str, settings: Settings) -> Channel:
    ch = _build(channel, settings)
    if ch.provider != "sandbox":
        ch.max_parallel = settings.provider_concurrency
    return ch


def _build(channel: str, settings: Settings) -> Channel:
    if channel == "email":
        from return_notify.channels.failover import FailoverChannel

        channels = [_email(p, settings) for p in email_provider_order(settings)]
        problems = compliance_problems(settings)  # after the credentials: those come first
        if problems:
            for ch in channels:
                ch.close()
            raise ConfigurationError(problems[0])
        return channels[0] if len(channels) == 1 else FailoverChannel(channels)
    if channel == "sms":
        return _sms(settings)
    if channel == "inapp" and settings.inapp_provider == "inbox":
        from return_notify.channels.inapp_inbox import InboxChannel

        return InboxChannel()
    return _sandbox(channel, settings)


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
