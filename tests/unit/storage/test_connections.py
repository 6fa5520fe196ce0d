"""How processes connect: PostgreSQL connections named and bounded, Redis clients for each
kind of URL (no server needed: the clients connect lazily)."""

from __future__ import annotations

import pytest

from return_notify.config.settings import Settings, reset_settings


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RSN_PROCESS_KIND", "PGAPPNAME", "RSN_DB_STATEMENT_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def test_connections_are_named_by_process_kind_and_carry_the_statement_timeout(
    fresh_env: pytest.MonkeyPatch,
) -> None:
    from return_notify.storage import db

    assert db.connect_args() == {"application_name": "return-notify-cli", "connect_timeout": 10,
                                 "options": "-c statement_timeout=60000"}
    db.set_process_kind("worker")
    assert db.connect_args()["application_name"] == "return-notify-worker"
    fresh_env.setenv("PGAPPNAME", "shop1-notify")  # the operator's own name wins
    assert db.application_name() == "shop1-notify"
    fresh_env.setenv("RSN_DB_STATEMENT_TIMEOUT_MS", "0")
    reset_settings()
    assert "options" not in db.connect_args()
    with pytest.raises(ValueError):
        db.set_process_kind("robot")


def test_the_pool_overflow_is_a_setting(fresh_env: pytest.MonkeyPatch) -> None:
    from return_notify.storage import db

    fresh_env.setenv("RSN_DATABASE_URL", "postgresql://u@127.0.0.1:1/x")
    fresh_env.setenv("RSN_DB_POOL_SIZE", "3")
    fresh_env.setenv("RSN_DB_MAX_OVERFLOW", "7")
    reset_settings()
    db.dispose_engine()
    try:
        pool = db.get_engine().pool
        assert (pool.size(), pool._max_overflow) == (3, 7)  # type: ignore[attr-defined]
    finally:
        db.dispose_engine()


def test_each_url_kind_gets_its_client() -> None:
    from redis.sentinel import SentinelConnectionPool

    from return_notify.storage.redis import redis_client

    settings = Settings(broker_url="sentinel://:data-pw@127.0.0.1:1,127.0.0.1:2/4",
                        redis_sentinel_master="primary", redis_sentinel_password="s-pw")
    client = redis_client(settings, decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "primary"
    assert pool.connection_kwargs["password"] == "data-pw" and pool.connection_kwargs["db"] == 4
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "s-pw"
    # the API's live inbox: the asyncio client, through the Sentinels too
    live = redis_client(settings, asyncio=True, timeout_s=None, socket_connect_timeout=2.0)
    assert type(live.connection_pool).__name__ == "SentinelConnectionPool"
    assert live.connection_pool.service_name == "primary"
    tls = redis_client(Settings(broker_url="rediss://:p@127.0.0.1:1/0"))
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
    with pytest.raises(Exception, match="redis://, rediss:// or sentinel://"):
        redis_client(Settings(broker_url="amqp://guest@localhost//"))
