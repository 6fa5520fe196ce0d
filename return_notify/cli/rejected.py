"""``rejected list|show``: the events ingest could not take, and why.

An event that breaks the contract (bad field, NUL character, nesting too deep) or that
PostgreSQL refuses is never lost: ingest keeps it in ``rejected_events`` with its reasons
and a storable copy of its payload, and ingests the rest of its batch. These commands show
them. ``register(app)`` adds the group.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from return_notify.cli.common import (
    JsonOpt,
    console,
    fail,
    parse_since,
    print_json,
    require_database,
)

rejected_app = typer.Typer(
    help="Events ingest rejected (contract errors, unstorable text), with the reasons.",
    no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``rejected`` group to the ``return-notify`` app."""
    app.add_typer(rejected_app, name="rejected")


def _first_error(errors: object) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{first.get('field', '?')}: {first.get('message', '?')}{more}"
    return str(errors)[:200]


@rejected_app.command("list")
def rejected_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events (slug).")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only events received since: 15m, 24h, 7d or an ISO time.")] = "24h",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List rejected events, newest first: when, tenant, event id and the first reason
    (`rejected show ID` for every reason and the payload)."""
    require_database()
    from return_notify.reporting.rejections import count_rejected, list_rejected
    from return_notify.storage.db import session_scope

    after = parse_since(since)
    with session_scope() as s:
        rows = list_rejected(s, tenant=tenant, since=after, limit=limit)
        total = count_rejected(s, tenant=tenant, since=after)
    if json_out:
        print_json({"total": total, "rejected": rows})
        return
    if not rows:
        console.print(f"no rejected events{' for ' + tenant if tenant else ''}"
                      f"{' since ' + since if since else ''}")
        return
    table = Table("id", "received", "tenant", "event_id", "reason")
    for r in rows:
        table.add_row(str(r["id"]), str(r["received_at"])[:19], escape(r["tenant"] or "-"),
                      escape((r["event_id"] or "-")[:64]), escape(_first_error(r["errors"])))
    console.print(table)
    if total > len(rows):
        console.print(f"{len(rows)} of {total} shown (--limit)")


@rejected_app.command("show")
def rejected_show(rejected_id: Annotated[int, typer.Argument(help="The id from `rejected list`.")],
                  json_out: JsonOpt = False) -> None:
    """Show one rejected event: every reason and the payload as it was kept."""
    require_database()
    from return_notify.reporting.rejections import get_rejected
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        row = get_rejected(s, rejected_id)
    if row is None:
        fail(f"no rejected event {rejected_id} (see `return-notify rejected list`)")
    if json_out:
        print_json(row)
        return
    console.print(f"[bold]rejected event {row['id']}[/] received {str(row['received_at'])[:19]}"
                  f", tenant {escape(row['tenant'] or '-')}, event_id "
                  f"{escape(row['event_id'] or '-')}")
    for e in row["errors"] if isinstance(row["errors"], list) else [row["errors"]]:
        console.print(f"  - {escape(str(e.get('field', '?')) if isinstance(e, dict) else '')}: "
                      f"{escape(str(e.get('message', e)) if isinstance(e, dict) else str(e))}",
                      highlight=False)
    import json

    console.print(escape(json.dumps(row["payload"], indent=2, ensure_ascii=False)),
                  highlight=False)
