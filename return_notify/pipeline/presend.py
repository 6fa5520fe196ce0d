"""Per-send policy around the provider call: suppression list, STOP bookkeeping, SMS →
email fallback and unsubscribe links. Plain functions on an open session."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.config.settings import Settings
from return_notify.core.masking import mask

log = logging.getLogger(__name__)

#: Twilio codes after which this number will not get SMS: fall back to email instead.
SMS_UNDELIVERABLE = {"21610", "21211", "21408", "21612", "21614"}
#: Of those, the ones that mean the customer opted out (STOP): suppress the number.
SMS_OPTED_OUT = {"21610"}


def sms_sender(settings: Settings) -> str | None:
    """Who sends our SMS: STOP is per sender (messaging service or number)."""
    if settings.sms_provider != "twilio":
        return None
    return settings.twilio_messaging_service_sid or settings.twilio_from


def suppressed_channels(session: Session, by_channel: dict[str, list[Any]],
                        settings: Settings) -> dict[str, dict[int, str]]:
    """The claimed rows whose recipient must not be messaged, for every channel of a claim
    in one query: ``{channel: {delivery id: reason}}`` (only email and SMS have
    suppressions; SMS STOPs are per sender)."""
    from return_notify.policy.suppression import suppressed_by_channel

    wanted = {ch: ([(r.tenant_id, r.recipient) for r in rows if r.recipient],
                   sms_sender(settings) if ch == "sms" else None)
              for ch, rows in by_channel.items() if ch in ("email", "sms") and rows}
    if not wanted:
        return {}
    found = suppressed_by_channel(session, wanted)
    return {ch: {r.id: found[ch][(r.tenant_id, r.recipient)] for r in by_channel[ch]
                 if r.recipient and (r.tenant_id, r.recipient) in found[ch]}
            for ch in found}


def record_opt_out(session: Session, tenant_id: int, recipient: str, settings: Settings) -> None:
    from return_notify.policy.suppression import suppress

    if suppress(session, tenant_id, "sms", recipient, "stop", sender=sms_sender(settings),
                source="twilio"):
        log.info("sms to %s suppressed: provider reports an opt-out (21610)", mask(recipient))


# The email delivery goes in its event's month partition (rsn_id_like), like every delivery
# of that event, so the partition's unique (event_pk, channel) index finds an existing one.
_FALLBACK = text("""
INSERT INTO deliveries (id, tenant_id, event_pk, return_pk, channel, milestone, urgency,
                        recipient, locale, state, occurred_at, template)
SELECT rsn_id_like(nextval('deliveries_id_seq'), d.event_pk), d.tenant_id, d.event_pk,
       d.return_pk, 'email', d.milestone, d.urgency,
       e.payload -> 'customer' ->> 'email', d.locale, 'pending', d.occurred_at, d.template
FROM deliveries d JOIN events e ON e.id = d.event_pk
WHERE d.id = ANY(CAST(:ids AS bigint[])) AND d.channel = 'sms'
  AND e.payload -> 'customer' ->> 'email' IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING id
""")


def fall_back_to_email(session: Session, sms_ids: list[int], settings: Settings) -> list[int]:
    """Create an email delivery for each undeliverable SMS whose customer has an address
    (and whose event has no email delivery yet); returns the new ids to enqueue."""
    if not sms_ids or not settings.sms_fallback_to_email:
        return []
    return [row[0] for row in session.execute(_FALLBACK, {"ids": sms_ids})]


def unsubscribe_token(tenant: str, recipient: str) -> str | None:
    """The one-click unsubscribe token of an email, when RSN_UNSUBSCRIBE_SECRET is set."""
    from return_notify.config.settings import get_settings
    from return_notify.policy.suppression import make_unsubscribe_token

    secret = get_settings().unsubscribe_secret
    if secret is None or not recipient:
        return None
    return make_unsubscribe_token(tenant, "email", recipient, secret.get_secret_value())
