"""CLI of the ways in: ``mappings``, ``streams`` (the listener) and ``carriers`` commands.

``mappings list|test``, ``streams listen|info|dead``, ``carriers secret|unmatched|rematch``.
``cli.py`` calls ``register(app)``; ``python -m return_notify.cli.sources`` runs these
commands on their own. Nothing here touches Redis or PostgreSQL until a command runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
err_console = Console(stderr=True)
log = logging.getLogger(__name__)

mappings_app = typer.Typer(help="WMS/ERP feed mappings (YAML per source).", no_args_is_help=True)
streams_app = typer.Typer(help="The Redis Stream way in for producers in any language.",
                          no_args_is_help=True)
carriers_app = typer.Typer(help="Carrier tracking webhooks (EasyPost, AfterShip, Shippo).",
                           no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def register(app: typer.Typer) -> None:
    app.add_typer(mappings_app, name="mappings")
    app.add_typer(streams_app, name="streams")
    app.add_typer(carriers_app, name="carriers")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ mappings ----------

@mappings_app.command("list")
def mappings_list(json_out: JsonOpt = False) -> None:
    """Every feed mapping found (built-in examples and RSN_SOURCE_MAPPING_DIRS)."""
    from return_notify.sources.mapping_files import load_all

    mappings, errors = load_all()
    rows = [{"source": m.source, "description": m.description, "file": m.file}
            for m in sorted(mappings.values(), key=lambda m: m.source)]
    broken = [{"file": e.where, "problems": e.problems} for e in errors]
    if json_out:
        _print_json({"mappings": rows, "unusable": broken})
        return
    for r in rows:
        console.print(f"[bold]{r['source']}[/]  {r['description']}\n  [dim]{r['file']}[/]")
    for b in broken:
        console.print(f"[red]unusable[/] {b['file']}: " + "; ".join(b["problems"]))


@mappings_app.command("test")
def mappings_test(
    source: Annotated[str, typer.Argument(help="A source name, or a mapping .yaml file.")],
    sample: Annotated[str, typer.Argument(help="The source's own JSON payload ('-': stdin).")],
    tenant: Annotated[str | None, typer.Option(help="Tenant slug for the events.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the events SOURCE's mapping makes of SAMPLE and every problem (exit 2 if any).

    Nothing is published; a customer the mapping takes from the return's earlier events
    (customer_from_return) is looked up only when the API publishes.
    """
    from return_notify.sources.mapping import MappingError
    from return_notify.sources.mapping_files import resolve

    try:
        mapping = resolve(source)
    except MappingError as exc:
        if json_out:
            _print_json({"source": source, "mapping_problems": exc.problems, "records": []})
            raise typer.Exit(2) from None
        _fail(f"mapping {exc.where} is not usable:\n  - " + "\n  - ".join(exc.problems), 2)
        return
    except LookupError as exc:
        _fail(str(exc))
        return
    try:
        text = sys.stdin.read() if sample == "-" else Path(sample).read_text(encoding="utf-8")
        payload = json.loads(text)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {sample}: {exc}", 2)
        return
    records = mapping.apply(payload, tenant or mapping.tenant or "example")
    problems = sum(len(r.problems) for r in records)
    if not records:
        problems = 1
    if json_out:
        _print_json({"source": mapping.source, "file": mapping.file, "problems": problems,
                     "records": [r.as_dict() for r in records]})
    else:
        _print_records(mapping.source, records)
    if problems:
        raise typer.Exit(2)


def _print_records(source: str, records: list[Any]) -> None:
    if not records:
        console.print(f"[red]problem:[/] the {source} mapping found no records in the payload")
    for r in records:
        head = f"record {r.index}"
        if r.skipped:
            console.print(f"[yellow]{head}: skipped[/] ({r.skipped})")
            continue
        ok = not r.problems
        console.print(f"[bold {'green' if ok else 'red'}]{head}: "
                      f"{'ok' if ok else str(len(r.problems)) + ' problem(s)'}[/]")
        sys.stdout.write(json.dumps(r.event, indent=2, default=str) + "\n")
        sys.stdout.flush()
        for p in r.problems:
            where = f" (from {p.path})" if p.path else ""
            console.print(f"  [red]problem[/] {escape(p.field + where)}: {escape(p.message)}")
        for n in r.notes:
            console.print(f"  [dim]note:[/] {escape(n)}")


# ------------------------------------------------------------------ streams -----------

def _redis() -> Any:
    from return_notify.config.settings import get_settings
    from return_notify.storage.redis import redis_client

    url = get_settings().broker_url
    if not url:
        _fail("RSN_BROKER_URL is not set: the stream lives on the broker's Redis")
        raise AssertionError
    return redis_client(url=url, timeout_s=35, decode_responses=True, health_check_interval=30)


@streams_app.command("listen")
def streams_listen(
    batch: Annotated[int | None, typer.Option(help="Entries per read (RSN_STREAM_BATCH).")] = None,
    consumer: Annotated[str | None, typer.Option(
        help="Consumer name; reuse it after a restart to resume its pending entries at once "
        "(default: host-pid).")] = None,
    loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO",
) -> None:
    """Consume the event stream with a consumer group until SIGTERM (warm: the batch in
    hand is published and acknowledged first)."""
    from return_notify.config.settings import get_settings
    from return_notify.observability.logs import setup_logging
    from return_notify.producer import publish_raw_batches
    from return_notify.sources.streams import StreamListener

    setup_logging(loglevel.upper())
    settings = get_settings()
    client = _redis()
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    listener = StreamListener(
        client, settings, name,
        lambda batches: publish_raw_batches(batches, settings=settings), batch=batch)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ready = os.environ.get("RSN_READY_FILE")
    if ready:
        listener.ensure_group()
        Path(ready).write_text(str(os.getpid()))
    try:
        listener.run(stop)
    finally:
        client.close()


@streams_app.command("info")
def streams_info(json_out: JsonOpt = False) -> None:
    """Length of the stream and its dead letter, and each consumer group's backlog."""
    from return_notify.config.settings import get_settings
    from return_notify.sources.streams import stream_keys

    key, dead = stream_keys(get_settings())
    r = _redis()
    groups = r.xinfo_groups(key) if r.exists(key) else []
    info = {"stream": key, "length": r.xlen(key), "dead_letter": dead, "dead": r.xlen(dead),
            "groups": [{**g, "consumers_detail": r.xinfo_consumers(key, g["name"])}
                       for g in groups]}
    if json_out:
        _print_json(info)
        return
    console.print(f"{key}: {info['length']} entries; dead letter {dead}: {info['dead']}")
    for g in groups:
        console.print(f"  group {g['name']}: pending {g['pending']}, lag {g.get('lag')}, "
                      f"consumers {g['consumers']}")


@streams_app.command("dead")
def streams_dead(limit: Annotated[int, typer.Option(help="Newest N.")] = 20,
                 json_out: JsonOpt = False) -> None:
    """Dead-lettered stream entries (not an event at all, or crashed consumers repeatedly)."""
    from return_notify.config.settings import get_settings
    from return_notify.sources.streams import stream_keys

    _, dead = stream_keys(get_settings())
    rows = [{"id": i, **f} for i, f in _redis().xrevrange(dead, count=limit)]
    if json_out:
        _print_json(rows)
        return
    for row in rows:
        console.print(f"{row['id']}  from {row.get('original_id')}: {row.get('reason')}",
                      markup=False)


# ------------------------------------------------------------------ carriers ----------

def _tenant_id(slug: str) -> int:
    from return_notify.storage.db import session_scope
    from return_notify.storage.tenants import find_tenant_id

    with session_scope() as s:
        tid = find_tenant_id(s, slug)
    if tid is None:
        _fail(f"no tenant {slug!r} (create it with `return-notify tenants create {slug}`)")
        raise AssertionError
    return int(tid)


@carriers_app.command("secret")
def carriers_secret(
    tenant: Annotated[str, typer.Argument(help="Tenant slug.")],
    provider: Annotated[str, typer.Argument(help="easypost, aftership or shippo.")],
    value: Annotated[str | None, typer.Option(
        help="The provider's secret (AfterShip shows its own); default: generate one.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a tenant's webhook secret for a provider and print the URL to configure there.

    The secret is printed once, here; it is never logged or returned by the API.
    """
    from return_notify.config.settings import get_settings
    from return_notify.sources.carrier_events import PROVIDERS, new_secret, set_secret
    from return_notify.storage.db import session_scope

    if provider not in PROVIDERS:
        _fail(f"provider must be one of {', '.join(PROVIDERS)}")
    secret = value or new_secret()
    tid = _tenant_id(tenant)
    with session_scope() as s:
        set_secret(s, tid, provider, secret)
    url = f"{get_settings().public_base_url.rstrip('/')}/v1/carriers/{provider}?tenant={tenant}"
    if provider == "shippo":
        url += f"&token={secret}"
    if json_out:
        _print_json({"tenant": tenant, "provider": provider, "secret": secret, "url": url})
        return
    console.print(f"webhook URL: {url}", markup=False)
    console.print(f"secret:      {secret}", markup=False)


@carriers_app.command("unmatched")
def carriers_unmatched(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    all_rows: Annotated[bool, typer.Option("--all", help="Include ones matched later.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Carrier updates whose tracking number no return had when they arrived."""
    from return_notify.sources.carrier_events import list_unmatched
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant) if tenant else None
    with session_scope() as s:
        rows = list_unmatched(s, tid, limit, include_matched=all_rows)
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        console.print(f"#{r['id']} {r['received_at']:%Y-%m-%d %H:%M} {r['tenant']} {r['provider']} "
                      f"{r['tracking_number']} {r['status']} → {r['milestone'] or '-'} "
                      f"(seen {r['seen']}x){' matched' if r['matched_at'] else ''}", markup=False)


@carriers_app.command("rematch")
def carriers_rematch(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish unmatched updates whose tracking number is known now (label event came late)."""
    from return_notify.config.settings import get_settings
    from return_notify.producer import publish_raw_batches
    from return_notify.sources.carrier_events import rematch
    from return_notify.storage.db import session_scope

    settings = get_settings()
    result = rematch(session_scope, lambda p: publish_raw_batches([p], settings=settings),
                     _tenant_id(tenant) if tenant else None)
    if json_out:
        _print_json(result)
        return
    console.print(f"{result['published']} of {result['checked']} unmatched updates published")


def main() -> None:
    app = typer.Typer(no_args_is_help=True, add_completion=False,
                      pretty_exceptions_show_locals=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
