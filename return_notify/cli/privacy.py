"""Personal data: ``customers erase`` (an erasure request) and ``retention`` (the purge, now).

``retention`` is a top-level command (``main`` lists it); ``register(app)`` adds the
``customers`` group. Everything heavy is imported inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from return_notify.cli.common import JsonOpt, console, fail, print_json, progress, require_urls

customers_app = typer.Typer(help="Customers' personal data (erasure requests).",
                            no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``customers`` group to the ``return-notify`` app."""
    app.add_typer(customers_app, name="customers")


@customers_app.command("erase")
def customers_erase(
    customer_id: Annotated[str, typer.Argument(help="The customer id the events carry.")],
    tenant: Annotated[str, typer.Option(help="Tenant (slug) the customer belongs to.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Erase a customer's personal data from events, deliveries, attempts, sandbox copies and
    the in-app inbox; anonymised rows stay so the KPIs keep their counts. Irreversible."""
    from return_notify.pipeline.retention import erase_customer
    from return_notify.storage.db import session_scope

    require_urls()
    if not yes and not typer.confirm(f"Erase the personal data of customer {customer_id!r} of "
                                     f"tenant {tenant!r}? This cannot be undone"):
        raise typer.Exit(1)
    with session_scope() as s:
        result = erase_customer(s, tenant, customer_id)
    if not result["tenant_found"]:
        if json_out:
            print_json(result)
        fail(f"no tenant {tenant!r}")
    if json_out:
        print_json(result)
        return
    counts = ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int)
                       and not isinstance(v, bool))
    console.print(f"erased customer [bold]{customer_id}[/] of {tenant}: {counts}")


def retention(
    days: Annotated[int | None, typer.Option(help="Override RSN_RETENTION_DAYS.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the retention purge now (beat runs it daily at RSN_RETENTION_AT): redact rendered
    content and personal data older than RSN_RETENTION_DAYS (the sandbox provider's copies
    are deleted), table by table in batches, with a progress line per table."""
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.retention import PURGE, purge_expired
    from return_notify.storage.db import session_scope

    require_urls()
    n = get_settings().retention_days if days is None else days
    with progress(json_out) as bar:
        rows = {t: bar.add_task(t, total=None, start=False) for t in PURGE} if n > 0 else {}
        last: list[str] = []

        def advance(table: str, redacted: int) -> None:
            if last and last[0] != table:  # the previous table is done
                done = bar.tasks[rows[last[0]]].completed
                bar.update(rows[last[0]], total=done)
            if not last or last[0] != table:
                bar.start_task(rows[table])
                last[:] = [table]
            bar.advance(rows[table], redacted)

        counts = purge_expired(session_scope, n, on_progress=advance)
        for task in rows.values():
            bar.update(task, total=bar.tasks[task].completed)
    if json_out:
        print_json({"retention_days": n, "redacted": counts})
    elif n <= 0:
        console.print("retention disabled (0 days): nothing purged")
    else:
        console.print(f"redacted data older than {n} days: "
                      + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"))
