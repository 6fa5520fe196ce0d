"""The ``return-notify`` command: run the services, feed events, inspect and repair state."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from return_notify.config.celery import ALL_QUEUES

app = typer.Typer(
    help="Return status notifications: return milestone events in, email/SMS/in-app out.\n\n"
    "Settings come from RSN_* environment variables (or .env); see README.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
deliveries_app = typer.Typer(help="Inspect deliveries (one row per event and channel).",
                             no_args_is_help=True)
dlq_app = typer.Typer(help="Dead deliveries (retries exhausted): list and replay.",
                      no_args_is_help=True)
templates_app = typer.Typer(help="Notification templates.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(dlq_app, name="dlq")
app.add_typer(templates_app, name="templates")

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _parse_since(since: str | None) -> datetime | None:
    """``--since`` as the API's ``since`` reads it (``kpis.parse_since``); exit 1 if bad."""
    from return_notify.reporting.kpis import parse_since

    try:
        return parse_since(since)
    except ValueError as exc:
        _fail(f"--{exc}")
        raise


# ------------------------------------------------------------------ services ----------

@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="Comma-separated queues.")
    ] = ",".join(ALL_QUEUES),
    pool: Annotated[str, typer.Option("-P", "--pool", help="prefork, threads, solo, gevent.")] = "prefork",
    concurrency: Annotated[
        int | None, typer.Option("-c", "--concurrency", help="Pool size (default: CPU count).")
    ] = None,
    loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO",
    hostname: Annotated[
        str | None, typer.Option("-n", "--hostname", help="Node name, e.g. email@%h.")
    ] = None,
    autoscale: Annotated[str | None, typer.Option(help="MAX,MIN pool processes, e.g. 8,2.")] = None,
    logfile: Annotated[str | None, typer.Option(help="Write the log here instead of stderr.")] = None,
    profile: Annotated[str | None, typer.Option(
        help="Pool defaults for the job: 'ingest' (prefork, one process per CPU: batches are "
             "CPU-bound) or 'delivery' (prefork, four processes per CPU, and "
             "RSN_PROVIDER_CONCURRENCY=64 provider calls in flight per process unless set: "
             "sends wait on the network). -P and -c still win.")] = None,
) -> None:
    """Run a Celery worker for some queues (events, email, sms, inapp, maintenance)."""
    if profile is not None:
        concurrency = _apply_profile(profile, concurrency)
    _require_urls()
    from return_notify.workers.app import app as celery_app

    unknown = set(queues.split(",")) - set(ALL_QUEUES)
    if unknown:
        _fail(f"unknown queue(s) {sorted(unknown)}; known: {', '.join(ALL_QUEUES)}")
    from return_notify.config.settings import get_settings

    argv = ["worker", "-Q", queues, "-P", pool, "-l", loglevel, "--without-gossip",
            "--without-mingle"]
    if get_settings().task_events:
        argv.append("-E")
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    if autoscale:
        argv += ["--autoscale", autoscale]
    if logfile:
        argv += ["-f", logfile]
    celery_app.worker_main(argv)


#: worker pool profiles, both on prefork: (processes per CPU, provider calls in flight per
#: process). Delivery waits on the network: more processes than CPUs keep the CPUs busy while
#: each process's batch waits, and its thread pool keeps 64 provider calls in flight
#: (`bench --providers local`: 4 processes per CPU sent 1.2-1.4x what 2 per CPU did).
WORKER_PROFILES: dict[str, tuple[int, int | None]] = {
    "ingest": (1, None),
    "delivery": (4, 64),
}


def _apply_profile(profile: str, concurrency: int | None) -> int:
    """Defaults of a pool profile; what the command line or the environment says wins."""
    if profile not in WORKER_PROFILES:
        _fail(f"unknown profile {profile!r}; known: {', '.join(WORKER_PROFILES)}")
    per_cpu, in_flight = WORKER_PROFILES[profile]
    if concurrency is None:
        concurrency = per_cpu * (os.cpu_count() or 1)
    if in_flight is not None and "RSN_PROVIDER_CONCURRENCY" not in os.environ:
        os.environ["RSN_PROVIDER_CONCURRENCY"] = str(in_flight)  # read by the pool processes
        from return_notify.config.settings import reset_settings

        reset_settings()
    return concurrency


@app.command()
def beat(
    schedule: Annotated[str, typer.Option(help="Where beat keeps its schedule state.")] = "",
    loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO",
) -> None:
    """Run Celery beat: the sweeper that re-enqueues due and lost deliveries."""
    _require_urls()
    import tempfile

    from return_notify.workers.app import app as celery_app
    path = schedule or os.path.join(tempfile.gettempdir(), f"rsn-beat-{os.getpid()}")
    celery_app.start(["beat", "-l", loglevel, "-s", path])


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 5555,
    address: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    basic_auth: Annotated[
        str | None, typer.Option(help="user:password, comma-separated for several "
                                      "(default: RSN_FLOWER_BASIC_AUTH).")
    ] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Run without credentials: anyone who reaches the port sees every "
        "task and can control workers (the API answers 401 to all).")] = False,
    persistent: Annotated[bool, typer.Option(
        "--persistent/--no-persistent", help="Keep task and worker state across restarts.")] = True,
    db: Annotated[str, typer.Option(help="State file of --persistent.")] = "flower-state.db",
    state_save_interval: Annotated[int, typer.Option(
        "--state-save-interval", "--state_save_interval",
        help="Save the state every N ms (0: only on shutdown).")] = 60_000,
    purge_offline_workers: Annotated[int | None, typer.Option(
        "--purge-offline-workers", "--purge_offline_workers",
        help="Forget workers offline for this many seconds.")] = None,
    max_tasks: Annotated[int, typer.Option(help="Tasks kept in memory.")] = 100_000,
) -> None:
    """Run Flower on the project's Celery app (live throughput per worker and task), with
    basic auth, persistent state and task events on. /metrics and /healthcheck answer
    without credentials: keep Flower's port off public networks."""
    _require_urls(db=False)
    from return_notify.config.settings import get_settings

    secret = get_settings().flower_basic_auth
    credentials = basic_auth or (secret.get_secret_value() if secret else "")
    oauth = bool(os.environ.get("FLOWER_AUTH"))  # Flower's own OAuth settings, if any
    if credentials:
        bad = [c for c in credentials.split(",") if not all(c.partition(":")[::2])]
        if bad:
            _fail("basic auth must be user:password (comma-separated for several)")
    elif not oauth and not no_auth:
        _fail("Flower shows every task and can control the workers: set "
              "RSN_FLOWER_BASIC_AUTH=user:password (or --basic-auth), or pass --no-auth "
              "explicitly for a private machine")
    elif no_auth:
        err_console.print("[bold yellow]warning:[/] Flower without authentication: anyone who "
                          f"can reach {address}:{port} can see every task and control workers")
    from return_notify.workers.app import app as celery_app

    argv = ["flower", f"--port={port}", f"--address={address}", "--enable_events=True",
            f"--max_tasks={max_tasks}"]
    if credentials:
        argv.append(f"--basic-auth={credentials}")  # in-process: never on a command line
    if persistent:
        argv += ["--persistent=True", f"--db={db}", f"--state_save_interval={state_save_interval}"]
    if purge_offline_workers:
        argv.append(f"--purge_offline_workers={purge_offline_workers}")
    celery_app.start(argv)


def _require_urls(db: bool = True) -> None:
    from return_notify.config.settings import get_settings

    s = get_settings()
    missing = [n for n, v in (("RSN_BROKER_URL", s.broker_url),
                              ("RSN_DATABASE_URL", s.database_url if db else "x")) if not v]
    if missing:
        _fail(f"{' and '.join(missing)} not set. Point them at Redis and PostgreSQL "
              "(see README), or try `return-notify demo`, which starts embedded servers.")


# ------------------------------------------------------------------ events in ---------

@app.command()
def emit(
    file: Annotated[str, typer.Argument(help="JSON Lines file of events, or - for stdin.")],
    batch_size: Annotated[int | None, typer.Option(help="Events per broker message.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish events from a JSON Lines file; invalid lines are reported, valid ones go in."""
    _require_urls(db=False)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from return_notify.config.settings import get_settings
    from return_notify.errors import EventValidationError, PublishError
    from return_notify.events import parse_event
    from return_notify.producer import publish_raw_batches

    stream = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115
    lines = stream.read().splitlines()
    if stream is not sys.stdin:
        stream.close()
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            good.append(parse_event(line).model_dump(mode="json", exclude_none=True))
        except EventValidationError as exc:
            errors.append({"line": no, "event_id": exc.event_id, "errors": exc.errors})
    size = batch_size or get_settings().ingest_batch_size
    batches = [good[i : i + size] for i in range(0, len(good), size)]
    published = 0
    try:
        with Progress(TextColumn("publishing"), BarColumn(), MofNCompleteColumn(),
                      console=err_console, disable=json_out or not err_console.is_terminal) as bar:
            task = bar.add_task("emit", total=len(good))
            published = publish_raw_batches(batches, on_batch=lambda n: bar.advance(task, n))
    except PublishError as exc:
        published = exc.published
        if json_out:
            _print_json({"published": published, "invalid": errors, "error": str(exc)})
        _fail(str(exc), code=3)
    if json_out:
        _print_json({"published": published, "invalid": errors})
    else:
        console.print(f"published [bold]{published}[/] events; {len(errors)} invalid lines")
        for e in errors[:50]:
            for fe in e["errors"]:
                console.print(f"  line {e['line']}: [yellow]{fe['field']}[/]: {fe['message']}")
    if errors:
        raise typer.Exit(2)


@app.command()
def schema(out: Annotated[str | None, typer.Option(help="Write to this file.")] = None) -> None:
    """Print the JSON Schema of the v1 return event (for producers in other languages)."""
    from return_notify.events import event_json_schema

    text = json.dumps(event_json_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


# ------------------------------------------------------------------ database ----------

@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head). Safe to run concurrently."""
    _require_urls()
    from return_notify.storage.migrate import upgrade

    console.print(f"database at revision [bold]{upgrade(revision)}[/]")


# ------------------------------------------------------------------ inspection --------

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
    _require_urls()
    from return_notify.reporting.deliveries import list_deliveries
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = list_deliveries(s, state=state, channel=channel, tenant=tenant,
                               return_id=return_id, limit=limit)
    if json_out:
        _print_json(rows)
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
    _require_urls()
    from return_notify.reporting.deliveries import get_delivery
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        d = get_delivery(s, delivery_id)
    if d is None:
        _fail(f"no delivery {delivery_id}")
        return
    if json_out:
        _print_json(d)
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
    _require_urls()
    from return_notify.pipeline.maintenance import dlq_list
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = dlq_list(s, tenant=tenant, channel=channel, since=_parse_since(since), limit=limit)
    if json_out:
        _print_json(rows)
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
    _require_urls()
    if not (ids or all_ or tenant or channel or since):
        _fail("say which: delivery ids, a filter (--tenant/--channel/--since) or --all")
    from return_notify.pipeline.maintenance import dlq_replay
    from return_notify.storage.db import session_scope
    from return_notify.workers.app import enqueue_deliveries

    with session_scope() as s:
        by_channel = dlq_replay(s, ids=ids or None, tenant=tenant, channel=channel,
                                since=_parse_since(since))
    enqueue_deliveries(by_channel)
    n = sum(len(v) for v in by_channel.values())
    if json_out:
        _print_json({"replayed": n, "ids": by_channel})
    else:
        console.print(f"replayed [bold]{n}[/] dead deliveries")


@app.command()
def stats(
    since: Annotated[str | None, typer.Option(help="e.g. 15m, 24h, 7d or an ISO time.")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    region: Annotated[str | None, typer.Option(
        help="KPIs of returns in this region and its sub-regions only, e.g. EU.")] = None,
    category: Annotated[str | None, typer.Option(
        help="KPIs of returns of this product category only.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts by channel and state, latencies, and the business KPIs (success rate by
    channel/provider/tenant/region, completion rate, funnel, engagement, load pattern).
    --region/--category narrow the KPIs as GET /v1/stats does."""
    _require_urls()
    from return_notify.core.regions import normalize_category, normalize_region
    from return_notify.reporting.kpis import ReturnScope, compute_kpis
    from return_notify.reporting.throughput import pipeline_stats
    from return_notify.storage.db import session_scope

    since_at = _parse_since(since)
    try:
        reg, cat = normalize_region(region), normalize_category(category)
    except ValueError as exc:
        _fail(str(exc))
        raise
    scope = ReturnScope((reg,) if reg else (), (cat,) if cat else ())
    with session_scope() as s:
        data = pipeline_stats(s, since=since_at, tenant=tenant)
        data["kpis"] = compute_kpis(s, since=since_at, tenant=tenant, scope=scope or None)
    if json_out:
        _print_json(data)
        return
    from return_notify.reporting.tables import kpi_tables, stats_tables

    for t in [*stats_tables(data), *kpi_tables(data["kpis"])]:
        console.print(t)


@templates_app.command("preview")
def templates_preview(
    milestone: Annotated[str, typer.Option(help="e.g. refund_processed.")],
    channel: Annotated[str, typer.Option(help="email, sms or inapp.")] = "email",
    tenant: Annotated[str, typer.Option(
        help="Tenant slug: its branding and overrides are used when RSN_DATABASE_URL is set.")
    ] = "acme-outfitters",
    locale: Annotated[str | None, typer.Option(help="Customer locale, e.g. de-AT.")] = None,
    region: Annotated[str | None, typer.Option(
        help="The sample event's region, e.g. EU-DE (uses EU templates).")] = None,
    category: Annotated[str | None, typer.Option(help="The sample event's product category.")]
    = None,
    variant: Annotated[str | None, typer.Option(
        help="The template variant a rule names, e.g. eu_formal.")] = None,
    html: Annotated[bool, typer.Option(help="Print the HTML part (email).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Render a tenant's message with sample data (packaged templates without a database)."""
    from return_notify.config.settings import get_settings
    from return_notify.events import Milestone
    from return_notify.pipeline.preview import PreviewTenant, preview, resolve_tenant
    from return_notify.templating.render import TemplateRenderError

    try:
        m = Milestone(milestone)
    except ValueError:
        _fail(f"unknown milestone {milestone!r}; one of: {', '.join(x.value for x in Milestone)}")
        return
    info = PreviewTenant(tenant)
    if get_settings().database_url:
        from sqlalchemy.exc import SQLAlchemyError

        from return_notify.storage.db import session_scope

        try:
            from return_notify.cli.templates import parse_scope, scoped_tenant

            with session_scope() as s:
                info = scoped_tenant(resolve_tenant(s, tenant), parse_scope(region, category, variant))
            if info.templates is None:
                err_console.print(f"[yellow]note:[/] no tenant {tenant!r} in the database; "
                                  "packaged templates and default branding")
        except SQLAlchemyError as exc:
            err_console.print(f"[yellow]note:[/] tenant {tenant!r} not read from the database "
                              f"({type(exc).__name__}); packaged templates and default branding")
    try:
        r = preview(info, channel, m.value, locale)
    except TemplateRenderError as exc:
        _fail(str(exc))
        return
    if json_out:
        _print_json({"subject": r.subject, "text": r.text, "html": r.html})
        return
    if r.subject:
        from rich.markup import escape

        console.print(f"[bold]{escape(r.subject)}[/]\n", highlight=False)
    sys.stdout.write((r.html if html and r.html else r.text) + "\n")


# ------------------------------------------------------------------ demo & bench ------

@app.command()
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
        _fail("--providers must be sandbox or local")
    code = run_demo(n_returns=returns, n_events=events, workers=workers, json_out=json_out,
                    providers=providers)
    raise typer.Exit(code)


@app.command()
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
    json_out: JsonOpt = False,
) -> None:
    """Measure end-to-end events/s and notifications/s against the bare-Celery ceiling, or
    (--providers local) notifications/s against provider concurrency."""
    if providers == "local":
        try:
            levels = [int(c) for c in concurrency.split(",") if c.strip()]
        except ValueError:
            levels = []
        if not levels or min(levels) < 1:
            _fail("--concurrency: positive integers, comma-separated (e.g. 8,16,32,64)")
        from return_notify.devtools.bench import run_scaling_bench

        raise typer.Exit(run_scaling_bench(levels, latency_ms=latency_ms, workers=workers,
                                           pool=pool, n_events=events, json_out=json_out))
    if providers != "sandbox":
        _fail("--providers: sandbox or local")
    from return_notify.devtools.bench import run_bench

    raise typer.Exit(run_bench(n_events=events or 20_000, workers=workers, n_noop=noop_tasks,
                               json_out=json_out))


def main() -> None:
    app()


def _register_extensions() -> None:
    from return_notify.cli.preferences import register as register_prefs
    from return_notify.cli.privacy import register as register_ops
    from return_notify.cli.rules import register as register_rules
    from return_notify.cli.sources import register as register_sources
    from return_notify.cli.templates import register as register_templates
    from return_notify.cli.tenants import register as register_api

    register_api(app)
    register_rules(app)
    register_sources(app)
    register_templates(templates_app)
    register_prefs(app)
    register_ops(app)


_register_extensions()


if __name__ == "__main__":
    main()
