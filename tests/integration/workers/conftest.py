"""Fixtures of the worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis


@pytest.fixture
def r(svc: Any) -> Iterator[Any]:
    """A plain client of the test broker (keys carry ``svc.redis_key_prefix``)."""
    client = redis.Redis.from_url(svc.broker_url)
    yield client
    client.close()
