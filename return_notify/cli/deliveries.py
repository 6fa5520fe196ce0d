"""Deliveries and dead deliveries: ``deliveries list|show`` and ``dlq list|replay``.

``register(app)`` adds the ``deliveries`` and ``dlq`` groups; the database is touched only
when a command runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from return_notify.cli.common import (
    JsonOpt,
    console,
    fail,
    parse_since,
    print_json,
    progress,
    require_urls,
)

#: dead deliveries replayed per transaction (and per enqueue) by `dlq replay`
REPLAY_BATCH = 1000

deliveries_app = typer.Typer(help="Inspect deliveries (one row per event and channel).",
                             no_args_is_help=True)
dlq_app = typer.Typer(help="Dead deliveries (retries exhausted): list and replay.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``deliveries`` and ``dlq`` groups to the ``return-notify`` app."""
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(dlq_app, name="dlq")


@deliveries_app.command("list")
def deliveries_list(
    state: Annotated[str | None, typer.Option(help="Filter by state.")] = None,
    channel: Annotated[str | None, typer.Option(help="email, sms or inapp.")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    return_id: Annotated[str | None, typer.Option("--return", help="Return reference.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List deliveries, newest first."""
    require_urls()
    from return_notify.reporting.deliveries import list_deliveries
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = list_deliveries(s, state=state, channel=channel, tenant=tenant,
                               return_id=return_id, limit=limit)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "tenant", "return", "milestone", "channel", "state", "attempts",
                  "recipient", "updated")
    for r in rows:
        table.add_row(str(r["id"]), r["tenant"], r["return_id"], r["milestone"], r["channel"],
                      r["state"], str(r["attempts"]), r["recipient"] or "",
                      str(r["updated_at"])[:19])
    console.print(table)


@deliveries_app.command("show")
def deliveries_show(delivery_id: int, json_out: JsonOpt = False) -> None:
    """Show one delivery with its rendered content and every attempt."""
    require_urls()
    from return_notify.reporting.deliveries import get_delivery
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        d = get_delivery(s, delivery_id)
    if d is None:
        fail(f"no delivery {delivery_id}")
    if json_out:
        print_json(d)
        return
    attempts = d.pop("attempts_log")
    table = Table("field", "value", show_header=False)
    for k, v in d.items():
        table.add_row(k, str(v) if v is not None else "")
    console.print(table)
    at = Table("#", "started", "ms", "outcome", "error", "code", title="attempts")
    for a in attempts:
        at.add_row(str(a["attempt_no"]), str(a["started_at"])[:23], f"{a['duration_ms']:.1f}",
                   a["outcome"], a["error_class"] or "", a["error_code"] or "")
    console.print(at)


@dlq_app.command("list")
def dlq_list_cmd(
    tenant: Annotated[str | None, typer.Option()] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="e.g. 2h, 7d or an ISO time.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List dead deliveries (retries exhausted) with their last error."""
    require_urls()
    from return_notify.pipeline.maintenance import dlq_list
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = dlq_list(s, tenant=tenant, channel=channel, since=parse_since(since), limit=limit)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "tenant", "return", "milestone", "channel", "attempts", "last error")
    for r in rows:
        table.add_row(str(r["id"]), r["tenant"], r["return_id"], r["milestone"], r["channel"],
                      str(r["attempts"]), (r["last_error"] or "")[:80])
    console.print(table)
    console.print(f"{len(rows)} dead deliveries")


@dlq_app.command("replay")
def dlq_replay_cmd(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Delivery ids (omit with --all or a filter).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead delivery.")] = False,
    tenant: Annotated[str | None, typer.Option()] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option()] = None,
    json_out: JsonOpt = False,
) -> None:
    """Give dead deliveries a fresh retry budget and enqueue them again."""
    require_urls()
    if not (ids or all_ or tenant or channel or since):
        fail("say which: delivery ids, a filter (--tenant/--channel/--since) or --all")
    from return_notify.pipeline.maintenance import dlq_count, dlq_replay
    from return_notify.storage.db import session_scope
    from return_notify.workers.app import enqueue_deliveries

    filters: dict[str, Any] = {"ids": ids or None, "tenant": tenant, "channel": channel,
                               "since": parse_since(since)}
    with session_scope() as s:
        total = dlq_count(s, **filters)
    by_channel: dict[str, list[int]] = {}
    # one short transaction per batch, each enqueued after its commit: a large replay never
    # holds thousands of row locks, and what was replayed before an interruption stays so
    with progress(json_out) as bar:
        task = bar.add_task("replaying dead deliveries", total=total)
        while True:
            with session_scope() as s:
                batch = dlq_replay(s, limit=REPLAY_BATCH, **filters)
            if not batch:
                break
            enqueue_deliveries(batch)
            for ch, got in batch.items():
                by_channel.setdefault(ch, []).extend(got)
            bar.advance(task, sum(len(v) for v in batch.values()))
    n = sum(len(v) for v in by_channel.values())
    if json_out:
        print_json({"replayed": n, "ids": by_channel})
    else:
        console.print(f"replayed [bold]{n}[/] dead deliveries")
