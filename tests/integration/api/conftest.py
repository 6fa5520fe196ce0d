"""Fixtures of the API tests: the real app on the module's scratch database (``api_env``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.integration.api_helpers import PUBLIC_BASE_URL, ApiEnv


@pytest.fixture
def client(api_env: ApiEnv) -> Iterator[TestClient]:
    from return_notify.api.app import create_app

    with TestClient(create_app(), base_url=PUBLIC_BASE_URL) as c:
        yield c
