"""`bench --providers local` end to end, small: the real SDKs, local provider servers, workers."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_scaling_bench_sends_through_the_real_sdks_and_reports_each_level(
    svc: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    from return_notify.devtools.bench import run_scaling_bench

    # when: one small level, provider servers answering after 20 ms
    code = run_scaling_bench([4], latency_ms=20, workers=1, n_events=150, json_out=True)
    # then
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    (level,) = result["levels"]
    assert level["concurrency"] == 4 and level["in_flight_max"] == 4
    assert level["by_channel"]["email"] > 0 and level["by_channel"]["sms"] > 0
    assert level["notifications_per_s"] > 0 and level["bound_provider_per_s"] == 200.0
    assert level["worker_cpu_cores"] > 0
