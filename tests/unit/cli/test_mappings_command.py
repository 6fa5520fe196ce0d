"""``return-notify mappings test``: the event a sample becomes, every problem listed, the exit code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from return_notify.cli.sources import register
from tests.sources_samples import erp_credit_memo, wms_message


@pytest.fixture
def cli() -> Iterator[typer.Typer]:
    app = typer.Typer()
    register(app)
    yield app


def test_mappings_test_prints_the_event_and_exits_0(cli: typer.Typer, tmp_path: Path) -> None:
    sample = tmp_path / "memo.json"
    sample.write_text(json.dumps(erp_credit_memo("RMA-5")))
    result = CliRunner().invoke(cli, ["mappings", "test", "example-erp", str(sample), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["problems"] == 0
    assert out["records"][0]["event"]["milestone"] == "refund_processed"


def test_mappings_test_lists_every_problem_and_exits_2(cli: typer.Typer, tmp_path: Path) -> None:
    sample = tmp_path / "bad.json"
    sample.write_text(json.dumps([wms_message("RMA-6"), wms_message("RMA-6", "ZZ",
                                                                    at="28/11/2026")]))
    result = CliRunner().invoke(cli, ["mappings", "test", "example-wms", str(sample)])
    assert result.exit_code == 2
    assert "record 0: ok" in result.stdout
    assert "record 1: 2 problem(s)" in result.stdout
    assert "milestone (from statusCode): 'ZZ' is not in the mapping's table" in result.stdout
    assert "occurred_at (from statusTime)" in result.stdout


def test_mappings_test_takes_a_yaml_file_and_reports_its_mistakes(cli: typer.Typer,
                                                                 tmp_path: Path) -> None:
    broken = tmp_path / "draft.yaml"
    broken.write_text("source: draft\nfields:\n  return_id: rma\n")
    sample = tmp_path / "s.json"
    sample.write_text("{}")
    result = CliRunner().invoke(cli, ["mappings", "test", str(broken), str(sample), "--json"])
    assert result.exit_code == 2
    assert any("event_id is required" in p for p in json.loads(result.stdout)["mapping_problems"])
    unknown = CliRunner().invoke(cli, ["mappings", "test", "no-such-source", str(sample)])
    assert unknown.exit_code == 1
