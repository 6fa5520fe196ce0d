"""Mask recipients for logs and listings: ``j***@example.com``, ``+1******4567``."""

from __future__ import annotations


def mask(recipient: str | None) -> str:
    if not recipient:
        return ""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    if recipient.startswith("+") and len(recipient) > 6:
        return recipient[:2] + "*" * (len(recipient) - 6) + recipient[-4:]
    return recipient[:2] + "***" if len(recipient) > 4 else "***"
