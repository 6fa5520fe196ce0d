"""Fixtures of the integration tests: a scratch database and Redis prefix per API test module,
the production defaults of the retailer-control settings, and ``measured`` (numbers a test
reports at the end of the run, whether it passes or fails).

The session's real Redis and PostgreSQL (``services``, ``svc``) come from ``tests/conftest.py``;
the builders that go with ``api_env`` are plain functions in ``tests/integration/api_helpers.py``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import Services
from tests.integration import hostile_helpers as hostile
from tests.integration.api_helpers import (
    DEFAULT_ADMIN_URL,
    DEFAULT_BROKER_URL,
    INBOX_MASTER,
    PUBLIC_BASE_URL,
    TWILIO_TOKEN,
    UNSUBSCRIBE_SECRET,
    ApiEnv,
    env_override,
    reset_caches,
    set_env,
)

_KEYS = ("RSN_DATABASE_URL", "RSN_BROKER_URL", "RSN_REDIS_KEY_PREFIX", "RSN_PUBLIC_BASE_URL",
         "RSN_TWILIO_AUTH_TOKEN", "RSN_INBOX_TOKEN_SECRET", "RSN_UNSUBSCRIBE_SECRET",
         "RSN_SENDGRID_WEBHOOK_PUBLIC_KEY", "RSN_WEBHOOK_REPLAY_WINDOW_S",
         "RSN_API_PUBLISH_TIMEOUT_S")


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def api_env() -> Iterator[ApiEnv]:
    """A scratch PostgreSQL database (migrated) and a Redis key prefix for one test module.

    The admin URL is ``RSN_DATABASE_URL`` if set (its database swapped for a fresh
    ``rsn_api_<tag>``), else ``postgresql://postgres@127.0.0.1:5432/postgres``; Redis is
    ``RSN_BROKER_URL`` or ``redis://127.0.0.1:6379/0`` under a unique key prefix. Both are
    removed afterwards and the environment restored.
    """
    base = os.environ.get("RSN_DATABASE_URL") or DEFAULT_ADMIN_URL
    url = make_url(base.replace("postgresql://", "postgresql+psycopg2://", 1))
    admin_url = url.set(database="postgres").render_as_string(hide_password=False)
    tag = uuid.uuid4().hex[:10]
    db_name = f"rsn_api_{tag}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    key = ec.generate_private_key(ec.SECP256R1())
    env = ApiEnv(url.set(database=db_name).render_as_string(hide_password=False),
                 os.environ.get("RSN_BROKER_URL") or DEFAULT_BROKER_URL,
                 f"rsn-api-test-{tag}:", key)
    saved = {k: os.environ.get(k) for k in _KEYS}
    for k, v in {
        "RSN_DATABASE_URL": env.database_url, "RSN_BROKER_URL": env.broker_url,
        "RSN_REDIS_KEY_PREFIX": env.prefix, "RSN_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "RSN_TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "RSN_INBOX_TOKEN_SECRET": INBOX_MASTER,
        "RSN_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "RSN_SENDGRID_WEBHOOK_PUBLIC_KEY": _public_key_b64(key),
        "RSN_WEBHOOK_REPLAY_WINDOW_S": None, "RSN_API_PUBLISH_TIMEOUT_S": "1",
    }.items():
        set_env(k, v)
    reset_caches()
    try:
        from return_notify.storage.migrate import upgrade

        upgrade()
        yield env
    finally:
        reset_caches()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        r = env.redis()
        try:
            keys = list(r.scan_iter(match=env.prefix + "*", count=1000))
            if keys:
                r.delete(*keys)
        finally:
            r.close()
        for k, v in saved.items():
            set_env(k, v)
        reset_caches()


@pytest.fixture
def empty_db(svc: Services) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL, set as RSN_DATABASE_URL for the
    test (migrations, months of history dropped: never the session database's rows);
    dropped afterwards and the session database restored."""
    url = make_url(svc.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    name = f"rsn_scratch_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.set(database="postgres").render_as_string(hide_password=False),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    saved = os.environ.get("RSN_DATABASE_URL")
    set_env("RSN_DATABASE_URL", url.set(database=name).render_as_string(hide_password=False))
    reset_caches()
    try:
        yield name
    finally:
        reset_caches()
        set_env("RSN_DATABASE_URL", saved)
        reset_caches()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def scratch_db(empty_db: str) -> str:
    """``empty_db``, migrated to the newest revision."""
    from return_notify.storage.migrate import upgrade

    upgrade()
    return empty_db


@pytest.fixture
def production_defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Quiet hours on and the 6 h ETA-SMS interval, whatever the suite's environment says.

    For the modules on retailer control: ``pytest.mark.usefixtures("production_defaults")``.
    """
    from return_notify.config.settings import reset_settings

    monkeypatch.setenv("RSN_QUIET_HOURS_ENABLED", "true")
    monkeypatch.setenv("RSN_THROTTLE_MIN_INTERVALS", "in_transit:sms=6h")
    monkeypatch.setenv("RSN_DIGEST_WINDOWS", "")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


_MEASURED = pytest.StashKey[list[str]]()


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """``measured(numbers)``: printed under "measured" in the terminal summary of the run."""
    lines = request.config.stash.setdefault(_MEASURED, [])

    def record(numbers: dict[str, Any]) -> None:
        lines.append(f"{request.node.nodeid}: {json.dumps(numbers, sort_keys=True)}")

    return record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_MEASURED, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
HostileStack = hostile.HostileStack


@pytest.fixture(scope="session")
def hostile_stack(services: Any, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[HostileStack]:
    """The hostile-input suite's running stack: ``return-notify api`` (one server process, its
    memory sampled throughout), a worker on every queue and ``return-notify streams
    listen``, all real subprocesses, on a database and Redis prefix of their own (the
    worker must never take another test's messages). Writes the suite's figures
    (``hostile_helpers.FIGURES``) when the session ends."""
    tag = uuid.uuid4().hex[:10]
    url = make_url(services.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    admin = create_engine(url.set(database="postgres").render_as_string(hide_password=False),
                          isolation_level="AUTOCOMMIT")
    db_name = f"rsn_hostile_{tag}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    key = ec.generate_private_key(ec.SECP256R1())
    env = hostile.stack_env(url.set(database=db_name).render_as_string(hide_password=False),
                            services.broker_url, f"rsn-hostile-{tag}:", _public_key_b64(key))
    logdir = tmp_path_factory.mktemp("hostile")
    stack = None
    try:
        with env_override(**env):
            from return_notify.storage.migrate import upgrade

            upgrade()
        stack = hostile.start_stack(env, logdir, key)
        yield stack
    finally:
        if stack is not None:
            hostile.stop_stack(stack)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        _flush(services.broker_url, env["RSN_REDIS_KEY_PREFIX"])
        out = Path(os.environ.get("RSN_HOSTILE_FIGURES") or logdir / "hostile-figures.json")
        hostile.FIGURES.write(out)
        print(f"\nhostile-input figures ({out}):\n{out.read_text()}")


def _flush(broker_url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(broker_url)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@pytest.fixture
def hostile_env(hostile_stack: HostileStack) -> Iterator[HostileStack]:
    """This process pointed at the hostile stack's database and Redis prefix for one test
    (helpers such as ``make_tenant`` and ``publish`` then work on the stack's)."""
    with env_override(**hostile_stack.env):
        yield hostile_stack


@pytest.fixture(scope="session")
def hostile_keys(hostile_stack: HostileStack) -> hostile.HostileKeys:
    """A tenant of the hostile stack with a tenant key, owner and viewer keys and an inbox
    token (customer ``c-1``)."""
    from return_notify.inbox import mint_inbox_token, tenant_inbox_secret
    from tests.integration.api_helpers import make_principals, make_tenant

    with env_override(**hostile_stack.env):
        tid, slug, key = make_tenant()
        keys, _ = make_principals(tid, slug, ("owner", "viewer"))
    token = mint_inbox_token(slug, "c-1", 3600, tenant_inbox_secret(hostile.INBOX_MASTER, slug))
    return hostile.HostileKeys(key, slug, tid, keys["owner"], keys["viewer"], token)


@pytest.fixture
def live_client(hostile_env: HostileStack) -> Iterator[hostile.LiveClient]:
    """A counting client of the hostile stack's API (this process on its database)."""
    client = hostile_env.client()
    yield client
    client.close()
