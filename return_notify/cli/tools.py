"""Try and measure the whole system: ``demo`` and ``bench``, run by ``return_notify.devtools``.

Both are top-level commands (``main`` lists them). ``devtools`` (embedded servers, load
generators) is imported inside the commands only: no other command pays for it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from return_notify.cli.common import JsonOpt, fail


def demo(
    returns: Annotated[int, typer.Option(help="Returns in the burst (≥ 500 by default).")] = 500,
    events: Annotated[int, typer.Option(help="Minimum events in the burst.")] = 2000,
    workers: Annotated[int, typer.Option(help="Worker pool processes.")] = 2,
    providers: Annotated[str, typer.Option(
        help="sandbox (records messages in PostgreSQL) or local: the real SendGrid and Twilio "
        "SDKs against local servers that speak their APIs.")] = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """Start embedded Redis + PostgreSQL (unless RSN_* URLs are set), workers and beat,
    publish a realistic burst of return events and show them flow to notifications."""
    from return_notify.devtools.demo import run_demo

    if providers not in ("sandbox", "local"):
        fail("--providers must be sandbox or local")
    code = run_demo(n_returns=returns, n_events=events, workers=workers, json_out=json_out,
                    providers=providers)
    raise typer.Exit(code)


def bench(
    events: Annotated[int | None, typer.Option(
        help="Events to publish (default 20,000; with --providers local: sized per level).")] = None,
    workers: Annotated[int, typer.Option(help="Worker pool processes (same for both runs).")] = 2,
    noop_tasks: Annotated[int, typer.Option(help="No-op tasks for the bare-Celery ceiling.")] = 20_000,
    providers: Annotated[str, typer.Option(
        help="sandbox: the pipeline against the bare-Celery ceiling; local: the real SDKs "
             "against local provider servers, notifications/s per --concurrency.")] = "sandbox",
    latency_ms: Annotated[float, typer.Option(
        help="--providers local: the provider servers answer after this long.")] = 200.0,
    concurrency: Annotated[str, typer.Option(
        help="--providers local: RSN_PROVIDER_CONCURRENCY levels, comma-separated.")] = "8,16,32,64",
    pool: Annotated[str, typer.Option(
        "-P", "--pool", help="--providers local: pool of the delivery worker.")] = "prefork",
    paced: Annotated[str | None, typer.Option(
        help="Single publishes at steady rates instead of a bulk burst: events/s, comma-"
        "separated (e.g. 50,200,500,1000); per rate: sent/s, backlog at stop, p50/p95/p99 "
        "occurred_at → sent, worker CPU per notification.")] = None,
    duration: Annotated[float, typer.Option(help="--paced: seconds of publishing per rate.")] = 30.0,
    history: Annotated[int, typer.Option(
        help="Run the bulk (or --paced) measurement on the empty database, then fill it "
        "with about N historical deliveries over 13 months (with their returns, events and "
        "attempts; ~1 min per million), roll the KPI aggregates up, vacuum, time stats, "
        "GET /v1/stats (also by region, category and a two-region manager), report and the "
        "sweeper's scan, and run the same measurement again: both side by side. 0: an empty "
        "database.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Measure end-to-end events/s and notifications/s against the bare-Celery ceiling,
    (--paced) latency and throughput of single publishes at steady rates, or
    (--providers local) notifications/s against provider concurrency. Every run uses a
    database of its own (embedded, or a scratch database on the configured server, dropped
    afterwards): the configured database's rows are never touched."""
    if history < 0:
        fail("--history: a number of deliveries, 0 or more")
    if history and providers != "sandbox":
        fail("--history: with the bulk run or --paced (not --providers local)")
    if paced is not None:
        try:
            rates = [float(r) for r in paced.split(",") if r.strip()]
        except ValueError:
            rates = []
        if not rates or min(rates) <= 0:
            fail("--paced: positive events/s, comma-separated (e.g. 50,200,500,1000)")
        if duration <= 0:
            fail("--duration: seconds, more than 0")
        from return_notify.devtools.bench import run_paced_bench

        raise typer.Exit(run_paced_bench(rates, duration_s=duration, workers=workers,
                                         json_out=json_out, history=history))
    if providers == "local":
        try:
            levels = [int(c) for c in concurrency.split(",") if c.strip()]
        except ValueError:
            levels = []
        if not levels or min(levels) < 1:
            fail("--concurrency: positive integers, comma-separated (e.g. 8,16,32,64)")
        from return_notify.devtools.bench import run_scaling_bench

        raise typer.Exit(run_scaling_bench(levels, latency_ms=latency_ms, workers=workers,
                                           pool=pool, n_events=events, json_out=json_out))
    if providers != "sandbox":
        fail("--providers: sandbox or local")
    from return_notify.devtools.bench import run_bench

    raise typer.Exit(run_bench(n_events=events or 20_000, workers=workers, n_noop=noop_tasks,
                               json_out=json_out, history=history))
