"""``/healthz`` (database revision, Redis up or down) and the served OpenAPI docs, on real services."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.integration.api_helpers import closed_port_url, env_override

pytestmark = pytest.mark.integration


def test_healthz_ok_and_503_when_redis_is_down(client: TestClient) -> None:
    from return_notify.api.app import create_app

    ok = client.get("/healthz")
    assert ok.status_code == 200, ok.text
    from alembic.script import ScriptDirectory

    from return_notify.storage.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("postgresql://x/y")).get_current_head()
    assert ok.json()["database"]["revision"] == head
    assert ok.json()["redis"]["ok"] is True
    with env_override(RSN_BROKER_URL=closed_port_url()), TestClient(create_app()) as c:
        down = c.get("/healthz")
    assert down.status_code == 503
    assert down.json()["redis"]["ok"] is False and down.json()["database"]["ok"] is True


def test_openapi_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "ReturnEvent" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200
