"""``return-notify bench --history N``: the option reaches the bulk and the paced runs, and
wrong uses are refused with the reason (the runs themselves stand in: no servers here)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from return_notify.cli.main import app
from return_notify.devtools import bench


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(bench, "run_bench", lambda **kw: seen.append(("bulk", kw)) or 0)
    monkeypatch.setattr(bench, "run_paced_bench",
                        lambda rates, **kw: seen.append(("paced", {"rates": rates, **kw})) or 0)
    return seen


def test_history_reaches_the_bulk_and_the_paced_runs(runs: list[Any]) -> None:
    cli = CliRunner()
    assert cli.invoke(app, ["bench", "--history", "2000", "--events", "400", "--json"]
                      ).exit_code == 0
    assert cli.invoke(app, ["bench", "--paced", "50,200", "--history", "1000000"]).exit_code == 0
    assert cli.invoke(app, ["bench"]).exit_code == 0
    assert [(kind, kw["history"]) for kind, kw in runs] == [
        ("bulk", 2000), ("paced", 1_000_000), ("bulk", 0)]
    assert runs[0][1]["json_out"] is True and runs[0][1]["n_events"] == 400
    assert runs[1][1]["rates"] == [50.0, 200.0]


@pytest.mark.parametrize(("args", "reason"), [
    (["--history", "-5"], "0 or more"),
    (["--history", "100", "--providers", "local"], "not --providers local"),
])
def test_wrong_uses_of_history_are_refused(runs: list[Any], args: list[str],
                                           reason: str) -> None:
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code != 0 and reason in result.output
    assert runs == []
