"""Generates the settings and CLI reference pages of the docs site from the code.

``python -m return_notify.devtools.reference_docs`` writes ``docs/reference/settings.md``
(from ``Settings.model_fields``, one table per ``# --- section ---`` heading of the class)
and ``docs/reference/cli.md`` (Typer's own Markdown generator on the ``return-notify``
app). ``--check`` renders both in memory and exits 1, naming the stale files, when the
committed pages differ; ``.ci/run`` runs it so the pages cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
import typer.cli
import typer.core
import typer.main
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from return_notify.config.settings import Settings

SETTINGS_PAGE = "settings.md"
CLI_PAGE = "cli.md"
# The command line as data, loaded by name as `typer MODULE utils docs` does: the CLI imports
# devtools for demo and bench, so a static import back would tie the two packages in a cycle.
CLI_APP = "return_notify.cli.main:app"
CLI_NAME = "return-notify"
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[2] / "docs" / "reference"
REGENERATE = "python -m return_notify.devtools.reference_docs"

_HEADING = re.compile(r"^\s*#\s*---\s*(?P<title>.*?)\s*-*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_ENV_NAME = re.compile(r"\b(RSN_[A-Z0-9_]+)\b")
_NO_SECTION = "Other"
_LIBRARIES = frozenset({"pydantic", "pydantic_settings"})


@dataclass(frozen=True)
class SettingRow:
    """One line of the settings reference."""

    section: str
    variable: str
    type: str
    default: str
    meaning: str


# --- settings ----------------------------------------------------------------------------


def _sections_of(cls: type) -> dict[str, str]:
    """Field name → the ``# --- title ---`` heading above it in ``cls``'s own source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    headings = [(n, m.group("title")) for n, line in enumerate(lines, 1) if (m := _HEADING.match(line))]
    tree = ast.parse(textwrap.dedent(source))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    above = [title for n, title in headings if n < stmt.lineno]
                    found[stmt.target.id] = _title(above[-1]) if above else _NO_SECTION
            break
    return found


def _title(heading: str) -> str:
    return heading[:1].upper() + heading[1:]


def _field_sections(model: type[BaseModel]) -> dict[str, str]:
    """Every field's section, looked up in the class (or base class) that declares it."""
    sections: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if issubclass(cls, BaseModel) and cls.__module__.partition(".")[0] not in _LIBRARIES:
            sections.update(_sections_of(cls))
    return {name: sections.get(name, _NO_SECTION) for name in model.model_fields}


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [arg for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(_type_name(arg) for arg in parts)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret",
             Path: "path"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    marks = {annotated_types.Ge: ("ge", "≥"), annotated_types.Gt: ("gt", ">"),
             annotated_types.Le: ("le", "≤"), annotated_types.Lt: ("lt", "<")}
    found = []
    for meta in info.metadata:
        for kind, (attribute, sign) in marks.items():
            if isinstance(meta, kind):
                found.append(f"{sign} {_number(getattr(meta, attribute))}")
    return f" ({', '.join(found)})" if found else ""


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        value = None
    if _is_secret(info.annotation):
        return "unset" if value is None else "set (not shown)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, int | float):
        return _code(_number(value))
    if value == "":
        return '`""` (empty)'
    return _code(str(value)).replace("|", "\\|")


def _escape_prose(text: str) -> str:
    """Markdown-safe table cell: code spans kept, ``RSN_*`` names set in code, specials escaped."""
    out: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_escape_plain(text[last:match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    for char in ("\\", "*", "<", ">", "|", "[", "]"):
        text = text.replace(char, "\\" + char)
    return _ENV_NAME.sub(r"`\1`", text)


def _derived_first(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """``model``'s fields, those its own class declares first, then each base class's (each
    in declaration order): a base class that only holds some sections comes after."""
    def depth(name: str) -> int:
        return next((i for i, cls in enumerate(model.__mro__)
                     if name in cls.__dict__.get("__annotations__", {})), len(model.__mro__))

    return sorted(model.model_fields.items(), key=lambda item: depth(item[0]))


def settings_rows(model: type[BaseModel] = Settings) -> list[SettingRow]:
    """One row per field of ``model``, in declaration order (the class's own fields before
    those of its base classes)."""
    sections = _field_sections(model)
    return [
        SettingRow(
            section=sections[name],
            variable=f"RSN_{name.upper()}",
            type=_type_name(info.annotation) + _bounds(info),
            default=_default(info),
            meaning=" ".join((info.description or "").split()),
        )
        for name, info in _derived_first(model)
    ]


def undocumented_settings(model: type[BaseModel] = Settings) -> list[str]:
    """The ``RSN_*`` variables whose field has no ``description``."""
    return [row.variable for row in settings_rows(model) if not row.meaning]


def render_settings(model: type[BaseModel] = Settings) -> str:
    """The settings reference page."""
    rows = settings_rows(model)
    page = [
        "<!-- Generated by `" + REGENERATE + "`: edit the field descriptions in "
        "return_notify/config/settings.py, not this page. -->",
        "",
        "# Settings reference",
        "",
        "Every setting is an environment variable with the prefix `RSN_` (a `.env` file in the "
        "working directory works too; see `.env.example`). Secrets are `SecretStr` and never "
        "logged. This page is generated from `return_notify.config.settings.Settings`; a few "
        "variables read outside it are listed in "
        "[Operating](../operating.md#environment-read-outside-the-settings).",
        "",
    ]
    for section in dict.fromkeys(row.section for row in rows):
        page += [f"## {section}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        page += [
            f"| `{row.variable}` | {row.type} | {row.default} | {_escape_prose(row.meaning)} |"
            for row in rows
            if row.section == section
        ]
        page.append("")
    return "\n".join(page)


# --- command line ------------------------------------------------------------------------


def load_cli(target: str = CLI_APP) -> typer.Typer:
    """The Typer app named ``module:attribute``."""
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(app, typer.Typer):
        raise TypeError(f"{target} is not a Typer app")
    return app


def cli_command(app: typer.Typer | None = None) -> typer.core.TyperGroup:
    """The command group behind the ``return-notify`` app."""
    command = typer.main.get_command(app or load_cli())
    if not isinstance(command, typer.core.TyperGroup):
        raise TypeError(f"{CLI_APP} has no sub-commands")
    return command


def top_level_commands(app: typer.Typer | None = None) -> list[str]:
    """Names of the commands and command groups directly under ``return-notify``."""
    command = cli_command(app)
    return command.list_commands(typer.Context(command, info_name=CLI_NAME))


def render_cli(app: typer.Typer | None = None) -> str:
    """The CLI reference page, from Typer's own Markdown generator.

    The context carries no markup mode, so help texts come out as written (no HTML escapes);
    the generator reads help strings, never the terminal, so the page is the same anywhere.
    """
    command = cli_command(app)
    ctx = typer.Context(command, info_name=CLI_NAME)
    body = typer.cli.get_docs_for_click(
        obj=command, ctx=ctx, name=CLI_NAME, title="Command-line reference"
    ).strip()
    title, _, rest = body.partition("\n")
    return (
        f"<!-- Generated by `{REGENERATE}` from {CLI_APP}: edit the help texts, not this page. -->"
        f"\n\n{title}\n\nEvery command also answers `--help`; commands that list or report take "
        f"`--json`.\n{rest}\n"
    )


# --- files -------------------------------------------------------------------------------


def render_all() -> dict[str, str]:
    """Page file name → its generated text."""
    return {SETTINGS_PAGE: render_settings(), CLI_PAGE: render_cli()}


def stale_pages(out_dir: Path, pages: dict[str, str]) -> list[Path]:
    """The pages under ``out_dir`` that are missing or differ from ``pages``."""
    stale = []
    for name, text in pages.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def write_pages(out_dir: Path, pages: dict[str, str]) -> list[Path]:
    """Write the pages that changed; return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = stale_pages(out_dir, pages)
    for path in changed:
        path.write_text(pages[path.name], encoding="utf-8")
    return changed


def _warn_undocumented(names: Iterable[str]) -> None:
    for name in names:
        print(f"warning: {name} has no description= in Settings; its row says nothing",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE.removeprefix("python -m "), description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a committed page is stale")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where the pages live (default: docs/reference of this checkout)")
    args = parser.parse_args(argv)
    _warn_undocumented(undocumented_settings())
    pages = render_all()
    if args.check:
        stale = stale_pages(args.out_dir, pages)
        for path in stale:
            print(f"stale: {path} does not match the code; run `{REGENERATE}` and commit it",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in write_pages(args.out_dir, pages):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
