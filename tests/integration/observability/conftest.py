"""A worker consuming only the ``maintenance`` queue, with its metrics endpoint: the one that
serves the backlog age, and whose pool processes the tests may kill."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from return_notify.devtools.processes import Proc, start_worker
from tests.integration.provider_helpers import free_port


@pytest.fixture(scope="module")
def maintenance_worker(services: Any, tmp_path_factory: Any) -> Iterator[tuple[Proc, int, Any]]:
    port, mdir = free_port(), tmp_path_factory.mktemp("prom-maintenance")
    proc = start_worker(services.env(RSN_METRICS_PORT=str(port), RSN_METRICS_DIR=str(mdir)),
                        concurrency=2, queues="maintenance", name="maintenance",
                        logdir=str(tmp_path_factory.mktemp("logs-maintenance")))
    yield proc, port, mdir
    proc.stop(20)
