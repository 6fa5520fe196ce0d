"""Builders for the tests that drive the API: tenants, deliveries, principals, signed requests.

The ``api_env`` fixture (``tests/integration/conftest.py``) gives a test module a scratch
PostgreSQL database and a Redis key prefix described by an ``ApiEnv``; the ``client``
fixture (``tests/integration/api/conftest.py``) is the real app on them. The helpers here
work on whatever database and Redis the environment names.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import text
from twilio.request_validator import RequestValidator

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
PUBLIC_BASE_URL = "https://notify.example.com"
TWILIO_TOKEN = "twilio-test-auth-token"
INBOX_MASTER = "inbox-master-secret-for-tests"
UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-tests"


@dataclass(frozen=True)
class ApiEnv:
    database_url: str
    broker_url: str
    prefix: str
    sendgrid_key: ec.EllipticCurvePrivateKey

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a worker or CLI process on this module's database and prefix."""
        return {"RSN_DATABASE_URL": self.database_url, "RSN_BROKER_URL": self.broker_url,
                "RSN_REDIS_KEY_PREFIX": self.prefix, **extra}

    def queued_events(self) -> list[dict[str, Any]]:
        """Events in the ``events`` queue (decoded Celery messages), oldest first."""
        r = self.redis()
        try:
            raw = r.lrange(f"{self.prefix}events", 0, -1)
        finally:
            r.close()
        out: list[dict[str, Any]] = []
        for message in reversed(raw):  # kombu LPUSHes: the last element is the oldest
            args = json.loads(base64.b64decode(json.loads(message)["body"]))[0]
            out.extend(args[0])
        return out

    def clear_queue(self) -> None:
        r = self.redis()
        try:
            r.delete(f"{self.prefix}events")
        finally:
            r.close()


def reset_caches() -> None:
    """Forget every per-process cache that depends on the environment."""
    from return_notify.channels.registry import reset_channels
    from return_notify.config.settings import reset_settings
    from return_notify.pipeline.ingest import forget_tenants
    from return_notify.storage.db import dispose_engine

    reset_settings()
    reset_settings()
    dispose_engine()
    reset_channels()
    forget_tenants()


@contextmanager
def env_override(**values: str | None) -> Iterator[None]:
    """Temporarily set (or with None, unset) RSN_* variables, resetting cached settings."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            set_env(k, v)
        reset_caches()
        yield
    finally:
        for k, v in saved.items():
            set_env(k, v)
        reset_caches()


def set_env(key: str, value: str | None) -> None:
    """Set ``key`` in this process's environment, or with None, remove it."""
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def closed_port_url() -> str:
    """A Redis URL on a local port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


# ------------------------------------------------------------------ builders ------------

def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_tenant(slug: str | None = None, name: str | None = None) -> tuple[int, str, str]:
    """A tenant with one API key: (tenant id, slug, key)."""
    from return_notify.access.tenant_keys import create_tenant, issue_api_key
    from return_notify.storage.db import session_scope

    slug = slug or uid("t-")
    with session_scope() as s:
        tid, _ = create_tenant(s, slug, name)
        key = issue_api_key(s, tid, "test")
    return tid, slug, key


def event(tenant: str, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": uid("ev-"), "tenant": tenant, "return_id": uid("RMA-"),
        "milestone": "return_approved", "occurred_at": datetime.now(UTC).isoformat(),
        "customer": {"id": "cust-1", "name": "Ana", "email": "ana@example.com"},
        "data": {},
    }
    ev.update(over)
    return ev


def make_delivery(tenant_id: int, *, channel: str = "email", state: str = "sent",
                  recipient: str = "ana@example.com", provider: str | None = "sendgrid",
                  provider_message_id: str | None = None, return_ref: str | None = None,
                  milestone: str = "return_approved", subject: str | None = "Approved",
                  body: str | None = "Your return is approved.") -> int:
    """A return, an event and one delivery row, as the pipeline would have left them."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rpk = s.execute(text(
            "INSERT INTO returns (tenant_id, return_id, milestone, customer_id) "
            "VALUES (:t, :r, :m, 'cust-1') ON CONFLICT ON CONSTRAINT uq_returns_tenant_ref "
            "DO UPDATE SET milestone = EXCLUDED.milestone RETURNING id"
        ), {"t": tenant_id, "r": return_ref or uid("RMA-"), "m": milestone}).scalar_one()
        epk = s.execute(text(
            "INSERT INTO events (tenant_id, event_id, return_pk, milestone, occurred_at, "
            "disposition, payload) VALUES (:t, :e, :r, :m, now(), 'notified', '{}') RETURNING id"
        ), {"t": tenant_id, "e": uid("ev-"), "r": rpk, "m": milestone}).scalar_one()
        return int(s.execute(text(
            "INSERT INTO deliveries (tenant_id, event_pk, return_pk, channel, milestone, "
            "recipient, state, provider, provider_message_id, subject, body, occurred_at, "
            "sent_at) VALUES (:t, :e, :r, :c, :m, :rc, :st, :p, :pm, :su, :b, now(), "
            "CASE WHEN :st IN ('sent', 'delivered') THEN now() END) RETURNING id"
        ), {"t": tenant_id, "e": epk, "r": rpk, "c": channel, "m": milestone, "rc": recipient,
            "st": state, "p": provider, "pm": provider_message_id, "su": subject,
            "b": body}).scalar_one())


def delivery(delivery_id: int) -> dict[str, Any]:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        row = s.execute(text("SELECT * FROM deliveries WHERE id = :id"),
                        {"id": delivery_id}).mappings().one()
    return dict(row)


def suppressions(channel: str, address: str) -> list[dict[str, Any]]:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = s.execute(text(
            "SELECT tenant_id, channel, address, sender, reason, source FROM suppressions "
            "WHERE channel = :c AND address = :a ORDER BY id"), {"c": channel, "a": address})
        return [dict(r) for r in rows.mappings()]


def audit(tenant_id: int, resource: str) -> list[dict[str, Any]]:
    """The audit-log entries of a tenant for one kind of resource, oldest first."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return [dict(r) for r in s.execute(text(
            "SELECT actor, action, resource_id, region, before, after FROM audit_log "
            "WHERE tenant_id = :t AND resource = :r ORDER BY id"),
            {"t": tenant_id, "r": resource}).mappings()]


def twilio_signature(path: str, params: dict[str, str]) -> str:
    return RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + path, params)


def sendgrid_headers(env: ApiEnv, body: bytes, timestamp: int) -> dict[str, str]:
    ts = str(timestamp)
    sig = env.sendgrid_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts}


# ------------------------------------------------------------------ principals ----------

#: The principals an RBAC test gives its tenant: name -> (role, regions, categories).
PRINCIPALS: dict[str, tuple[str, list[str], list[str]]] = {
    "owner": ("owner", [], []), "admin": ("admin", [], []),
    "eu": ("regional_manager", ["EU"], []), "us": ("regional_manager", ["US"], []),
    "elec": ("category_manager", [], ["electronics"]),
    "app": ("category_manager", [], ["apparel"]), "viewer": ("viewer", [], []),
}


def make_principals(tenant_id: int, slug: str, names: Iterator[str] | tuple[str, ...] | None = None,
                    ) -> tuple[dict[str, str], dict[str, int]]:
    """Create ``PRINCIPALS`` (or those of ``names``) as an operator: (keys, ids) by name."""
    from return_notify.access.principals import create_principal, operator
    from return_notify.storage.db import session_scope

    keys: dict[str, str] = {}
    ids: dict[str, int] = {}
    with session_scope() as s:
        op = operator(tenant_id, slug, "test")
        for name in (names if names is not None else PRINCIPALS):
            role, regions, cats = PRINCIPALS[name]
            created, keys[name] = create_principal(s, op, name, role, regions, cats)
            ids[name] = created["id"]
    return keys, ids


def call(client: TestClient, key: str, method: str, path: str, body: Any = None,
         params: dict[str, Any] | None = None) -> Any:
    """``client`` request with a principal key."""
    return client.request(method, path, json=body, params=params,
                          headers={"Authorization": f"Bearer {key}"})
