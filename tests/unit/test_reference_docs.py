"""The generated reference pages cover every setting and command, and ``--check`` catches drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from return_notify.config.settings import Settings
from return_notify.devtools import reference_docs


class _Sample(BaseSettings):
    """A settings class shaped like ``Settings``, small enough to assert on whole rows."""

    loose: int = Field(default=3, description="before any heading")

    # --- first part -------------------------------------------------------------------
    rate: float = Field(default=2.0, ge=0, le=1, description="a | b <c> *d* for RSN_OTHER")
    token: SecretStr | None = None

    # --- second part ------------------------------------------------------------------
    mode: str = Field(default="", description="`a|b` kept as code")


def test_settings_page_has_a_row_for_every_settings_field() -> None:
    # when
    page = reference_docs.render_settings()

    # then
    for name in Settings.model_fields:
        assert f"| `RSN_{name.upper()}` |" in page, name


def test_settings_rows_take_their_section_from_the_heading_above_the_field() -> None:
    # when
    rows = {row.variable: row for row in reference_docs.settings_rows(_Sample)}

    # then
    assert rows["RSN_LOOSE"].section == "Other"
    assert rows["RSN_RATE"].section == "First part"
    assert rows["RSN_TOKEN"].section == "First part"
    assert rows["RSN_MODE"].section == "Second part"


class _Derived(_Sample):
    """A class that declares some sections and inherits the others (``Settings`` and
    ``ApiSettings``)."""

    # --- own part ---------------------------------------------------------------------
    own: int = Field(default=1, description="declared here")


def test_a_class_s_own_sections_come_before_those_of_its_base_class() -> None:
    # when
    rows = reference_docs.settings_rows(_Derived)

    # then: its own field first, under its own heading; the base's after, under theirs
    assert [r.variable for r in rows] == ["RSN_OWN", "RSN_LOOSE", "RSN_RATE", "RSN_TOKEN",
                                          "RSN_MODE"]
    assert rows[0].section == "Own part" and rows[2].section == "First part"


def test_settings_page_escapes_cells_hides_secrets_and_reports_missing_descriptions() -> None:
    # when
    page = reference_docs.render_settings(_Sample)

    # then
    assert "| `RSN_RATE` | number (≥ 0, ≤ 1) | `2` | a \\| b \\<c\\> \\*d\\* for `RSN_OTHER` |" in page
    assert "| `RSN_TOKEN` | secret | unset |  |" in page
    assert '| `RSN_MODE` | string | `""` (empty) | `a|b` kept as code |' in page
    assert page.index("## Other") < page.index("## First part") < page.index("## Second part")
    assert reference_docs.undocumented_settings(_Sample) == ["RSN_TOKEN"]


def test_cli_page_has_a_section_for_every_top_level_command() -> None:
    # given
    commands = reference_docs.top_level_commands()

    # when
    page = reference_docs.render_cli()

    # then
    assert {"demo", "worker", "beat", "emit", "db", "dlq", "stats", "templates"} <= set(commands)
    for name in commands:
        assert f"\n## `return-notify {name}`\n" in page, name


def test_cli_page_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setenv("COLUMNS", "40")
    narrow = reference_docs.render_cli()

    # when
    monkeypatch.setenv("COLUMNS", "200")
    wide = reference_docs.render_cli()

    # then
    assert narrow == wide
    assert "&#x27;" not in wide


def test_check_passes_on_fresh_pages_and_names_the_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    assert reference_docs.main(["--out-dir", str(tmp_path)]) == 0
    assert reference_docs.main(["--check", "--out-dir", str(tmp_path)]) == 0
    settings_page = tmp_path / reference_docs.SETTINGS_PAGE
    settings_page.write_text(settings_page.read_text() + "hand edit\n", encoding="utf-8")
    capsys.readouterr()

    # when
    code = reference_docs.main(["--check", "--out-dir", str(tmp_path)])

    # then
    err = capsys.readouterr().err
    assert code == 1
    assert f"stale: {settings_page}" in err
    assert reference_docs.CLI_PAGE not in err
    assert "hand edit" in settings_page.read_text()


def test_check_fails_when_a_page_is_missing(tmp_path: Path) -> None:
    # given
    assert reference_docs.main(["--out-dir", str(tmp_path)]) == 0
    (tmp_path / reference_docs.CLI_PAGE).unlink()

    # when / then
    assert reference_docs.main(["--check", "--out-dir", str(tmp_path)]) == 1
