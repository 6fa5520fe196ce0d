"""What every command module of the CLI shares: the consoles, failing, JSON output, settings checks.

Defined once here and imported by each command module (``services``, ``events``, ...); this
module imports none of them. Heavy imports (settings, storage, access) happen inside the
functions, so importing it costs no more than Typer and Rich.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from return_notify.access.audit import Actor

#: standard output: tables and messages for people
console = Console()
#: standard error: errors, warnings and progress bars
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

#: what ``tenant_id`` adds to "no tenant 'x'" (``{slug}`` is the tenant's slug)
CREATE_TENANT_HINT = "create it with `return-notify tenants create {slug}`"
LIST_TENANTS_HINT = "see `return-notify tenants list`"

_NO_DATABASE = "RSN_DATABASE_URL is not set. Point it at PostgreSQL (see README)."


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on standard error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on standard output (dates and the like as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def require_urls(db: bool = True) -> None:
    """Exit 1 unless the broker URL (and, with ``db``, the database URL) is set."""
    from return_notify.config.settings import get_settings

    s = get_settings()
    missing = [n for n, v in (("RSN_BROKER_URL", s.broker_url),
                              ("RSN_DATABASE_URL", s.database_url if db else "x")) if not v]
    if missing:
        fail(f"{' and '.join(missing)} not set. Point them at Redis and PostgreSQL "
             "(see README), or try `return-notify demo`, which starts embedded servers.")


def require_database(message: str = _NO_DATABASE) -> None:
    """Exit 1 with ``message`` unless the database URL is set (the broker is not needed)."""
    from return_notify.config.settings import get_settings

    if not get_settings().database_url:
        fail(message)


def parse_since(since: str | None) -> datetime | None:
    """``--since`` as the API's ``since`` reads it (``kpis.parse_since``); exit 1 if bad."""
    from return_notify.reporting.kpis import parse_since as parse

    try:
        return parse(since)
    except ValueError as exc:
        fail(f"--{exc}")


def tenant_id(session: Any, slug: str, hint: str = "") -> int:
    """The id of tenant ``slug``; exit 1 with ``no tenant 'slug' (hint)`` if there is none."""
    from return_notify.storage.tenants import find_tenant_id

    tid = find_tenant_id(session, slug)
    if tid is None:
        fail(f"no tenant {slug!r}" + (f" ({hint.format(slug=slug)})" if hint else ""))
    return int(tid)


def audit_actor() -> Actor:
    """Who the audit log names for a change made at the command line: ``cli:<login name>``.

    The command line holds the database credentials, so it acts as the tenant's owner.
    The login name is ``getpass.getuser()`` (LOGNAME, USER, LNAME, USERNAME, then the
    password database), or ``operator`` when none of them names anyone, so one person gets
    one name in the log whichever command they run.
    """
    from return_notify.access.audit import Actor

    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):  # no pwd module, or no such uid
        user = "operator"
    return Actor(None, f"cli:{user}")
