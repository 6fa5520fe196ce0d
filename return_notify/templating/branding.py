"""Tenant branding: read, validate, save, and apply it to a message's render context.

A tenant's display name, logo, colours, support links, sender name, tone (friendly or
formal), default locale and default timezone live in ``tenant_branding``; every field may
be unset, which keeps the default. The shared layouts read them from ``context["tenant"]``,
so every default template (and every override that extends a layout) is branded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.addresses import AddressError, normalize_email
from return_notify.core.zones import is_zone
from return_notify.templating.i18n import canonical_locale

__all__ = ["BRANDING_FIELDS", "Branding", "BrandingUpdate", "apply_branding", "bump_revision",
           "get_branding", "save_branding"]

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_URL_BAD = re.compile(r"[\s<>\"'\\]")

BRANDING_FIELDS = ("display_name", "logo_url", "brand_color", "accent_color", "support_url",
                   "support_email", "sender_name", "tone", "default_locale", "timezone")


@dataclass(frozen=True)
class Branding:
    """A tenant's stored branding (``None`` fields fall back to the defaults)."""

    tenant_id: int
    display_name: str | None = None
    logo_url: str | None = None
    brand_color: str | None = None
    accent_color: str | None = None
    support_url: str | None = None
    support_email: str | None = None
    sender_name: str | None = None
    tone: str = "friendly"
    default_locale: str | None = None
    timezone: str | None = None
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BrandingUpdate(BaseModel):
    """The branding a tenant sets (API ``PUT /v1/admin/branding``, CLI ``templates branding``).

    Omitted or null fields are reset to the default.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str | None = Field(default=None, max_length=200,
                                     description="Name shown in messages (default: tenant name)")
    logo_url: str | None = Field(default=None, max_length=2048, description="https:// image URL")
    brand_color: str | None = Field(default=None, description="#rrggbb: header bar and links")
    accent_color: str | None = Field(default=None, description="#rrggbb: the button (default: brand)")
    support_url: str | None = Field(default=None, max_length=2048)
    support_email: str | None = Field(default=None, max_length=254)
    sender_name: str | None = Field(default=None, max_length=100,
                                    description="Email From display name, e.g. 'Acme Returns'")
    tone: Literal["friendly", "formal"] = "friendly"
    default_locale: str | None = Field(default=None, max_length=35,
                                       description="BCP 47; used when a customer's language has "
                                                   "no templates")
    timezone: str | None = Field(default=None, max_length=64,
                                 description="IANA zone for customers without one")

    @field_validator("display_name", "sender_name")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        if v is not None and (not v or re.search(r"[\r\n\x00-\x1f<>\"]", v)):
            raise ValueError("must be one non-empty line without control characters, <, > or \"")
        return v

    @field_validator("brand_color", "accent_color")
    @classmethod
    def _color(cls, v: str | None) -> str | None:
        if v is not None and not _HEX.fullmatch(v):
            raise ValueError("must be a hex colour like #1a73e8 or #fff")
        return v

    @field_validator("logo_url", "support_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and (not v.lower().startswith(("https://", "http://"))
                              or _URL_BAD.search(v)):
            raise ValueError("must be an http(s) URL without spaces or quotes")
        return v

    @field_validator("support_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return normalize_email(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        if v is None:
            return v
        tag = canonical_locale(v)
        if tag is None:
            raise ValueError("must be a BCP 47 locale such as de-DE or fr")
        return tag

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not is_zone(v):
            raise ValueError("must be an IANA timezone such as Europe/Berlin")
        return v


_SELECT = text("""
SELECT tenant_id, display_name, logo_url, brand_color, accent_color, support_url, support_email,
       sender_name, tone, default_locale, timezone, revision, updated_at, updated_by
FROM tenant_branding WHERE tenant_id = ANY(CAST(:ids AS int[]))
""")


def load_branding(session: Session, tenant_ids: list[int]) -> dict[int, Branding]:
    """Stored branding of these tenants (tenants without a row are absent)."""
    rows = session.execute(_SELECT, {"ids": tenant_ids}).mappings().all()
    return {int(r["tenant_id"]): Branding(**dict(r)) for r in rows}


def get_branding(session: Session, tenant_id: int) -> Branding:
    """The tenant's branding; all defaults when none was ever saved."""
    return load_branding(session, [tenant_id]).get(tenant_id) or Branding(tenant_id)


def bump_revision(session: Session, tenant_id: int) -> int:
    """Increment (creating the row if needed) the tenant's branding/template revision and
    return it. The row lock it takes serialises concurrent template saves of one tenant."""
    return int(session.execute(text("""
        INSERT INTO tenant_branding (tenant_id, revision) VALUES (:t, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET revision = tenant_branding.revision + 1
        RETURNING revision
    """), {"t": tenant_id}).scalar_one())


def save_branding(session: Session, tenant_id: int, update: BrandingUpdate,
                  actor: str | None = None) -> Branding:
    """Replace the tenant's branding with ``update`` (one transaction: the caller's)."""
    bump_revision(session, tenant_id)
    values = update.model_dump()
    session.execute(text(f"""
        UPDATE tenant_branding SET {", ".join(f"{k} = :{k}" for k in values)},
               updated_at = now(), updated_by = :actor
        WHERE tenant_id = :tenant_id
    """), {**values, "actor": actor, "tenant_id": tenant_id})
    return get_branding(session, tenant_id)


def apply_branding(context: dict[str, Any], branding: Branding | None) -> dict[str, Any]:
    """Fill ``context["tenant"]`` from ``branding`` (in place; also returned).

    Keys the layouts read: ``name``, ``logo_url``, ``brand_color``, ``accent_color``,
    ``support_url``, ``support_email``, ``sender_name``, ``tone``, ``default_locale``,
    ``timezone`` (the last two steer locale fallback and date formatting).
    """
    current = context.get("tenant")
    tenant: dict[str, Any] = dict(current) if isinstance(current, Mapping) else {}
    for key in ("logo_url", "brand_color", "accent_color", "support_url", "support_email",
                "sender_name", "default_locale", "timezone"):
        tenant.setdefault(key, None)
    tenant.setdefault("tone", "friendly")
    if branding is not None:
        if branding.display_name:
            tenant["name"] = branding.display_name
        for key in ("logo_url", "brand_color", "accent_color", "support_url", "support_email",
                    "sender_name", "default_locale", "timezone"):
            value = getattr(branding, key)
            if value:
                tenant[key] = value
        tenant["tone"] = branding.tone or "friendly"
    context["tenant"] = tenant
    return context
