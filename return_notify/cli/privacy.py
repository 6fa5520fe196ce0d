"""Operator commands added to ``return-notify``: ``report``, ``customers erase``, ``retention``.

``cli.py`` calls ``register(app)``; everything heavy is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

customers_app = typer.Typer(help="Customers' personal data (erasure requests).",
                            no_args_is_help=True)


def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"),
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or an ISO time.")] = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant (slug).")] = None,
    period: Annotated[str, typer.Option(help="Completion-rate period: day, week or month.")] = "week",
    title: Annotated[str, typer.Option(help="Heading of the report.")] = "return-notify report",
) -> None:
    """Write one self-contained HTML report (no network needed to view it): throughput over
    time, latency distribution, success by channel, the return funnel, load, KPI tables."""
    from return_notify.cli.main import _fail, _parse_since, _require_urls, console
    from return_notify.reporting.html import render_report
    from return_notify.reporting.kpis import PERIODS, compute_kpis
    from return_notify.storage.db import session_scope

    _require_urls()
    if period not in PERIODS:
        _fail(f"--period must be one of {', '.join(PERIODS)}")
    with session_scope() as s:
        k = compute_kpis(s, since=_parse_since(since), tenant=tenant, period=period)
    out.write_text(render_report(k, title=title), encoding="utf-8")
    console.print(f"report written to [bold]{out}[/] ({out.stat().st_size / 1024:,.0f} KiB)")


@customers_app.command("erase")
def customers_erase(
    customer_id: Annotated[str, typer.Argument(help="The customer id the events carry.")],
    tenant: Annotated[str, typer.Option(help="Tenant (slug) the customer belongs to.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Erase a customer's personal data from events, deliveries, attempts, sandbox copies and
    the in-app inbox; anonymised rows stay so the KPIs keep their counts. Irreversible."""
    from return_notify.cli.main import _fail, _print_json, _require_urls, console
    from return_notify.pipeline.retention import erase_customer
    from return_notify.storage.db import session_scope

    _require_urls()
    if not yes and not typer.confirm(f"Erase the personal data of customer {customer_id!r} of "
                                     f"tenant {tenant!r}? This cannot be undone"):
        raise typer.Exit(1)
    with session_scope() as s:
        result = erase_customer(s, tenant, customer_id)
    if not result["tenant_found"]:
        if json_out:
            _print_json(result)
        _fail(f"no tenant {tenant!r}")
    if json_out:
        _print_json(result)
        return
    counts = ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int)
                       and not isinstance(v, bool))
    console.print(f"erased customer [bold]{customer_id}[/] of {tenant}: {counts}")


def retention(
    days: Annotated[int | None, typer.Option(help="Override RSN_RETENTION_DAYS.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Run the retention purge now (beat runs it daily): redact rendered content and personal
    data older than RSN_RETENTION_DAYS."""
    from return_notify.cli.main import _print_json, _require_urls, console
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.retention import purge_expired
    from return_notify.storage.db import session_scope

    _require_urls()
    n = get_settings().retention_days if days is None else days
    counts = purge_expired(session_scope, n)
    if json_out:
        _print_json({"retention_days": n, "redacted": counts})
    elif n <= 0:
        console.print("retention disabled (0 days): nothing purged")
    else:
        console.print(f"redacted data older than {n} days: "
                      + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"))


def register(app: typer.Typer) -> None:
    """Add ``report``, ``customers erase`` and ``retention`` to the ``return-notify`` app."""
    app.command("report")(report)
    app.command("retention")(retention)
    app.add_typer(customers_app, name="customers")
