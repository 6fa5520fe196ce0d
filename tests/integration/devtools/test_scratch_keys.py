"""A benchmark's Redis keys go when its run ends (``endpoints.scratch_keys``): a run against
a configured Redis leaves none of its queues or kombu bindings behind, and touches no other
key (real Redis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from return_notify.devtools.endpoints import Endpoints, scratch_keys
from tests.helpers import uid

pytestmark = pytest.mark.integration


def test_the_runs_keys_go_and_no_other(svc: Any) -> None:
    client = redis.Redis.from_url(svc.broker_url)
    run, other = f"{uid('rsn-bench-')}:", f"{uid('rsn-other-')}:"
    try:
        with scratch_keys(Endpoints(svc.broker_url, "", embedded=False), run):
            for i in range(1500):  # more than one delete call's worth
                client.set(f"{run}k{i}", 1)
            client.rpush(f"{run}_kombu.binding.events", "x")
            client.set(f"{other}keep", 1)
        assert list(client.scan_iter(match=run + "*", count=1000)) == []
        assert client.get(f"{other}keep") == b"1"
    finally:
        client.delete(f"{other}keep")
        client.close()
