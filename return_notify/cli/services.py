"""The long-running services and their schema: ``worker``, ``beat``, ``flower``, ``api``, ``db``.

``worker``, ``beat``, ``flower`` and ``api`` are top-level commands (``main`` lists them);
``register(app)`` adds the ``db`` group. Celery, Flower and uvicorn are imported only when
their command runs.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from return_notify.cli.common import (
    JsonOpt,
    console,
    err_console,
    fail,
    print_json,
    require_database,
    require_urls,
)
from return_notify.config.celery import ALL_QUEUES

db_app = typer.Typer(help="Database schema (Alembic migrations) and the monthly history "
                     "partitions.", no_args_is_help=True)

#: what follows `--` on `worker`, `beat` and `flower`: passed to Celery or Flower unchanged
CeleryOptions = Annotated[list[str] | None, typer.Argument(
    metavar="-- OPTION", show_default=False,
    help="Options after `--`, passed unchanged to Celery (worker, beat) or Flower.")]


def register(app: typer.Typer) -> None:
    """Add the ``db`` group to the ``return-notify`` app."""
    app.add_typer(db_app, name="db")


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
    celery_options: CeleryOptions = None,
) -> None:
    """Run a Celery worker for some queues (events, email, sms, inapp, maintenance,
    retention). Options after `--` go to `celery worker` unchanged, e.g.
    `return-notify worker -Q email -- --without-heartbeat --max-tasks-per-child 500`."""
    if profile is not None:
        concurrency = _apply_profile(profile, concurrency)
    require_urls()
    from return_notify.workers.app import app as celery_app

    unknown = set(queues.split(",")) - set(ALL_QUEUES)
    if unknown:
        fail(f"unknown queue(s) {sorted(unknown)}; known: {', '.join(ALL_QUEUES)}")
    from return_notify.config.settings import get_settings

    if "email" in queues.split(","):  # a worker that sends email refuses to send it badly
        from return_notify.channels.registry import compliance_problems
        from return_notify.errors import ConfigurationError

        try:
            problems = compliance_problems(get_settings())
        except ConfigurationError as exc:
            problems = [str(exc)]
        if problems:
            fail(problems[0])

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
    celery_app.worker_main(argv + list(celery_options or []))


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
        fail(f"unknown profile {profile!r}; known: {', '.join(WORKER_PROFILES)}")
    per_cpu, in_flight = WORKER_PROFILES[profile]
    if concurrency is None:
        concurrency = per_cpu * (os.cpu_count() or 1)
    if in_flight is not None and "RSN_PROVIDER_CONCURRENCY" not in os.environ:
        os.environ["RSN_PROVIDER_CONCURRENCY"] = str(in_flight)  # read by the pool processes
        from return_notify.config.settings import reset_settings

        reset_settings()
    return concurrency


def beat(
    schedule: Annotated[str, typer.Option(
        help="Where beat keeps its schedule state: a file on a volume that outlives the "
             "process (default: a new temporary file).")] = "",
    loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO",
    celery_options: CeleryOptions = None,
) -> None:
    """Run Celery beat: the sweeper every RSN_SWEEP_INTERVAL_S, the retention purge daily at
    RSN_RETENTION_AT (UTC). Run exactly one beat per deployment: two send everything twice."""
    require_urls()
    import tempfile

    from return_notify.workers.app import app as celery_app
    path = schedule or os.path.join(tempfile.gettempdir(), f"rsn-beat-{os.getpid()}")
    celery_app.start(["beat", "-l", loglevel, "-s", path, *(celery_options or [])])


def flower(
    port: Annotated[int | None, typer.Option(
        help="HTTP port (default: FLOWER_PORT, else 5555).")] = None,
    address: Annotated[str | None, typer.Option(
        help="Bind address (default: FLOWER_ADDRESS, else 127.0.0.1).")] = None,
    basic_auth: Annotated[
        str | None, typer.Option(help="user:password, comma-separated for several "
                                      "(default: RSN_FLOWER_BASIC_AUTH, else FLOWER_BASIC_AUTH).")
    ] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Run without credentials: anyone who reaches the port sees every "
        "task and can control workers (the API answers 401 to all).")] = False,
    persistent: Annotated[bool | None, typer.Option(
        "--persistent/--no-persistent",
        help="Keep task and worker state across restarts (default: FLOWER_PERSISTENT, "
             "else on).")] = None,
    db: Annotated[str | None, typer.Option(
        help="State file of --persistent (default: FLOWER_DB, else flower-state.db).")] = None,
    state_save_interval: Annotated[int | None, typer.Option(
        "--state-save-interval", "--state_save_interval",
        help="Save the state every N ms, 0: only on shutdown (default: "
             "FLOWER_STATE_SAVE_INTERVAL, else 60000).")] = None,
    purge_offline_workers: Annotated[int | None, typer.Option(
        "--purge-offline-workers", "--purge_offline_workers",
        help="Forget workers offline for this many seconds.")] = None,
    max_tasks: Annotated[int | None, typer.Option(
        help="Tasks kept in memory (default: FLOWER_MAX_TASKS, else 100000).")] = None,
    flower_options: CeleryOptions = None,
) -> None:
    """Run Flower on the project's Celery app (live throughput per worker and task), with
    basic auth, persistent state and task events on. Flower's own FLOWER_* variables are
    honoured where no option is given; options after `--` go to Flower unchanged.
    /metrics and /healthcheck answer without credentials: keep Flower's port off public
    networks."""
    require_urls(db=False)
    from return_notify.config.settings import get_settings

    secret = get_settings().flower_basic_auth
    credentials = (basic_auth or (secret.get_secret_value() if secret else "")
                   or os.environ.get("FLOWER_BASIC_AUTH", ""))
    oauth = bool(os.environ.get("FLOWER_AUTH"))  # Flower's own OAuth settings, if any
    if credentials:
        bad = [c for c in credentials.split(",") if not all(c.partition(":")[::2])]
        if bad:
            fail("basic auth must be user:password (comma-separated for several)")
    elif not oauth and not no_auth:
        fail("Flower shows every task and can control the workers: set "
             "RSN_FLOWER_BASIC_AUTH=user:password (or FLOWER_BASIC_AUTH, or --basic-auth), "
             "or pass --no-auth explicitly for a private machine")
    address = address or os.environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    port = port or int(os.environ.get("FLOWER_PORT") or 5555)
    if no_auth and not credentials:
        err_console.print("[bold yellow]warning:[/] Flower without authentication: anyone who "
                          f"can reach {address}:{port} can see every task and control workers")
    from return_notify.workers.app import app as celery_app

    argv = ["flower", f"--port={port}", f"--address={address}", "--enable_events=True"]
    # Flower reads FLOWER_* itself; a value is passed here only when the option was given,
    # or Flower has no variable for it (then the project's default applies)
    for name, value, default in (("max_tasks", max_tasks, 100_000),
                                 ("persistent", persistent, True),
                                 ("db", db, "flower-state.db"),
                                 ("state_save_interval", state_save_interval, 60_000),
                                 ("purge_offline_workers", purge_offline_workers, None)):
        if value is None and f"FLOWER_{name.upper()}" not in os.environ:
            value = default
        if value is not None:
            argv.append(f"--{name}={value}")
    if credentials:
        argv.append(f"--basic-auth={credentials}")  # in-process: never on a command line
    celery_app.start(argv + list(flower_options or []))


def api(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        help="Proxies trusted for X-Forwarded-* (comma-separated), e.g. the load balancer.")
    ] = None,
) -> None:
    """Serve the HTTP API with uvicorn (OpenAPI docs at /docs). Logs go through the
    project's logging (JSON lines with RSN_LOG_JSON=true, recipients masked), in every
    server process. With RSN_API_METRICS_PORT set, request metrics of every server process
    are served there (on RSN_METRICS_ADDRESS), never on the public port."""
    require_database()
    import uvicorn

    from return_notify.config.settings import get_settings
    from return_notify.observability.logs import uvicorn_log_config
    from return_notify.storage.db import set_process_kind

    set_process_kind("api")  # application_name, inherited by every server process
    settings = get_settings()
    if settings.api_metrics_port is not None:
        from return_notify.observability.http_metrics import start_api_endpoint

        start_api_endpoint(settings.api_metrics_port, settings.metrics_address,
                           settings.metrics_dir)
    uvicorn.run("return_notify.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips, server_header=False,
                log_config=uvicorn_log_config(log_level))


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument()] = "head",
    wait: Annotated[float, typer.Option(
        help="Seconds to keep retrying while PostgreSQL does not answer yet (a container "
             "starting beside it); 0: fail at once.")] = 0.0,
) -> None:
    """Apply migrations up to REVISION (default: head). Safe to run concurrently."""
    require_urls()
    import time

    from return_notify.cli.common import unavailable_service
    from return_notify.storage.db import dispose_engine
    from return_notify.storage.migrate import upgrade

    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.5
    while True:
        try:
            current = upgrade(revision)
            break
        except Exception as exc:
            found = unavailable_service(exc)
            if found is None or time.monotonic() + delay > deadline:
                raise
            err_console.print(f"{found[0]} not answering yet ({found[1]}); retrying in "
                              f"{delay:.1f} s", markup=False, highlight=False)
            dispose_engine()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    console.print(f"database at revision [bold]{current}[/]")


@db_app.command("partitions")
def db_partitions(json_out: JsonOpt = False) -> None:
    """List the monthly partitions of events, deliveries, delivery_attempts and
    rejected_events (and the legacy and default ones) with rows (PostgreSQL's estimate)
    and size on disk."""
    require_urls()
    from return_notify.storage.db import get_engine
    from return_notify.storage.partitions import list_partitions

    with get_engine().connect() as conn:
        found = [p.as_dict() for p in list_partitions(conn)]
    if json_out:
        print_json({"partitions": found, "bytes": sum(p["bytes"] for p in found)})
        return
    from rich.table import Table

    table = Table("partition", "month", "attached", "rows (est.)", "size", title="Partitions")
    for p in found:
        table.add_row(p["partition"], p["month"] or p["kind"], "yes" if p["attached"] else "no",
                      f"{p['rows_estimate']:,}", f"{p['bytes'] / 2**20:,.1f} MiB")
    console.print(table)
    console.print(f"total {sum(p['bytes'] for p in found) / 2**20:,.1f} MiB")


@db_app.command("maintain")
def db_maintain(
    history_months: Annotated[int | None, typer.Option(
        help="Override RSN_HISTORY_MONTHS (0: drop nothing).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the daily history maintenance now: create the coming months' partitions, then
    drop the months older than RSN_HISTORY_MONTHS (exported to RSN_ARCHIVE_DIR first when
    it is set), then delete the in-app items of those months and webhook ids older than
    7 days."""
    require_urls()
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.history import run_maintenance
    from return_notify.reporting.rollup import rollup
    from return_notify.storage.db import get_engine

    s = get_settings()
    months = s.history_months if history_months is None else history_months
    if months < 0:
        fail("--history-months must be 0 or more")
    with get_engine().connect() as conn:
        # the months that go stay in the KPIs
        rollup(conn, hourly_days=s.stats_hourly_days, daily_months=s.stats_daily_months)
        out = run_maintenance(conn, months, s.partitions_ahead, s.archive_dir)
    if json_out:
        print_json(out)
        return
    console.print(f"created {len(out['created'])} partitions, dropped {len(out['dropped'])}"
                  + (f" (archived {', '.join(out['archived'])})" if out["archived"] else "")
                  + "; rows deleted: " + ", ".join(f"{t} {n}" for t, n in
                                                   out["rows_deleted"].items()))


@db_app.command("rollup")
def db_rollup(json_out: JsonOpt = False) -> None:
    """Roll the KPI aggregates up to the current hour now (beat does it every
    RSN_STATS_ROLLUP_INTERVAL_S). The first run on a large history reads all of it: 3-4
    minutes per million deliveries (with the aggregates by region and category)."""
    require_urls()
    from return_notify.config.settings import get_settings
    from return_notify.reporting.rollup import rollup
    from return_notify.storage.db import get_engine

    with get_engine().connect() as conn:
        s = get_settings()
        out = rollup(conn, hourly_days=s.stats_hourly_days,
                     daily_months=s.stats_daily_months).as_dict()
    if json_out:
        print_json(out)
    elif out["skipped"]:
        console.print("another rollup is running: nothing done")
    else:
        console.print(f"rolled up {out['hours']:,} hours ({out['returns']:,} returns) up to "
                      f"{out['watermark']} in {out['seconds']:,.1f} s")
