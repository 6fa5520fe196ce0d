"""What every command module of the CLI shares: the consoles, failing, JSON output, settings
checks, the wrapper that turns an unreachable service into one line and exit 3, progress bars.

Defined once here and imported by each command module (``services``, ``events``, ...); this
module imports none of them. Heavy imports (settings, storage, access) happen inside the
functions, so importing it costs no more than Typer and Rich.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from return_notify.access.audit import Actor

#: standard output: tables and messages for people
console = Console()
#: standard error: errors, warnings and progress bars
err_console = Console(stderr=True)

#: exit status of a command whose service (PostgreSQL, Redis) did not answer
EXIT_UNAVAILABLE = 3


class _Output:
    """Whether the running command was asked for ``--json`` (set while its options parse)."""

    json = False


def _remember_json(value: bool) -> bool:
    _Output.json = bool(value)
    return value


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.",
                                       callback=_remember_json)]

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


# ------------------------------------------------------------------ running the app ------

def unavailable_service(exc: BaseException) -> tuple[str, str] | None:
    """``(service, reason)`` when ``exc`` (or an exception it came from) says PostgreSQL or
    Redis did not answer; ``None`` for any other error (a failed query is not an outage)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        found = _classify(e)
        if found:
            return found
        stack += [e.__cause__, e.__context__, getattr(e, "orig", None)]  # SQLAlchemy's DBAPI error
    return None


def _classify(e: BaseException) -> tuple[str, str] | None:
    module = type(e).__module__.split(".")[0]
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if module == "psycopg2":
        # a connection-level failure is the base class without a SQLSTATE; a server's error
        # (a cancelled query, 57014: psycopg2.errors.QueryCanceled) is a subclass with one
        import psycopg2

        if type(e) is psycopg2.OperationalError and not getattr(e, "pgcode", None):
            return "PostgreSQL", first_line
    if module == "redis":
        import redis

        if isinstance(e, redis.ConnectionError | redis.TimeoutError):
            return "Redis", first_line
    if module == "kombu":
        from kombu.exceptions import OperationalError

        if isinstance(e, OperationalError):
            return "Redis", first_line
    if module == "return_notify" and type(e).__name__ == "PublishError":
        return "Redis", first_line
    return None


def _service_url(service: str) -> str:
    from return_notify.config.settings import get_settings
    from return_notify.core.redis_urls import mask

    try:
        s = get_settings()
    except Exception:  # noqa: BLE001 - a bad setting must not hide the outage
        return "(unknown)"
    if service == "PostgreSQL":
        return mask(s.database_url)
    return mask(s.broker_url)


def run(app: typer.Typer) -> None:
    """Run ``app`` as the console script does. A service that does not answer ends the
    command with one line on standard error (and, with ``--json``, a JSON error object on
    standard output) and exit 3, whatever the command; a configuration error with one line
    and exit 1. Any other error keeps its traceback: it is a bug to report."""
    from return_notify.errors import ConfigurationError

    try:
        app()
    except ConfigurationError as exc:
        if _Output.json:
            print_json({"error": "configuration", "message": str(exc)})
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        raise SystemExit(1) from None
    except Exception as exc:
        found = unavailable_service(exc)
        if found is None:
            raise
        service, reason = found
        url = _service_url(service)
        if _Output.json:
            print_json({"error": "unavailable", "service": service.lower(), "url": url,
                        "message": reason})
        err_console.print(f"[bold red]error:[/] {service} at {escape(url)} did not answer: "
                          f"{escape(reason)}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_UNAVAILABLE) from None


def version_callback(value: bool) -> None:
    """``--version``: print the installed version and exit."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("return-notify")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        sys.stdout.write(f"return-notify {v}\n")
        raise typer.Exit()


@contextmanager
def progress(json_out: bool = False) -> Iterator[Any]:
    """A Rich progress display on standard error (nothing with ``--json`` or when standard
    error is not a terminal: scripts and logs get the result only)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  disable=json_out or not err_console.is_terminal, transient=False) as bar:
        yield bar
