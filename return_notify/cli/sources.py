"""The ways in: ``mappings``, ``streams`` (the listener) and ``carriers`` commands.

``mappings list|test``, ``streams listen|info|dead``, ``carriers secret|unmatched|rematch``.
``register(app)`` adds the three groups; ``python -m return_notify.cli.sources`` runs these
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
from rich.markup import escape

from return_notify.cli.common import (
    CREATE_TENANT_HINT,
    JsonOpt,
    console,
    fail,
    print_json,
    run,
    tenant_id,
)

log = logging.getLogger(__name__)

mappings_app = typer.Typer(help="WMS/ERP feed mappings (YAML per source).", no_args_is_help=True)
streams_app = typer.Typer(help="The Redis Stream way in for producers in any language.",
                          no_args_is_help=True)
carriers_app = typer.Typer(help="Carrier tracking webhooks (EasyPost, AfterShip, Shippo).",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``mappings``, ``streams`` and ``carriers`` to an app (``return-notify``'s or this
    module's own)."""
    app.add_typer(mappings_app, name="mappings")
    app.add_typer(streams_app, name="streams")
    app.add_typer(carriers_app, name="carriers")


def _say(*objects: Any, **options: Any) -> None:
    """``console.print`` without wrapping: ids, URLs and secrets stay on one line to copy."""
    console.print(*objects, soft_wrap=True, **options)


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
        print_json({"mappings": rows, "unusable": broken})
        return
    for r in rows:
        _say(f"[bold]{r['source']}[/]  {r['description']}\n  [dim]{r['file']}[/]")
    for b in broken:
        _say(f"[red]unusable[/] {b['file']}: " + "; ".join(b["problems"]))


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
            print_json({"source": source, "mapping_problems": exc.problems, "records": []})
            raise typer.Exit(2) from None
        fail(f"mapping {exc.where} is not usable:\n  - " + "\n  - ".join(exc.problems), 2)
    except LookupError as exc:
        fail(str(exc))
    try:
        text = sys.stdin.read() if sample == "-" else Path(sample).read_text(encoding="utf-8")
        payload = json.loads(text)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {sample}: {exc}", 2)
    records = mapping.apply(payload, tenant or mapping.tenant or "example")
    problems = sum(len(r.problems) for r in records)
    if not records:
        problems = 1
    if json_out:
        print_json({"source": mapping.source, "file": mapping.file, "problems": problems,
                    "records": [r.as_dict() for r in records]})
    else:
        _print_records(mapping.source, records)
    if problems:
        raise typer.Exit(2)


def _print_records(source: str, records: list[Any]) -> None:
    if not records:
        _say(f"[red]problem:[/] the {source} mapping found no records in the payload")
    for r in records:
        head = f"record {r.index}"
        if r.skipped:
            _say(f"[yellow]{head}: skipped[/] ({r.skipped})")
            continue
        ok = not r.problems
        _say(f"[bold {'green' if ok else 'red'}]{head}: "
             f"{'ok' if ok else str(len(r.problems)) + ' problem(s)'}[/]")
        sys.stdout.write(json.dumps(r.event, indent=2, default=str) + "\n")
        sys.stdout.flush()
        for p in r.problems:
            where = f" (from {p.path})" if p.path else ""
            _say(f"  [red]problem[/] {escape(p.field + where)}: {escape(p.message)}")
        for n in r.notes:
            _say(f"  [dim]note:[/] {escape(n)}")


# ------------------------------------------------------------------ streams -----------

def _redis() -> Any:
    from return_notify.config.settings import get_settings
    from return_notify.storage.redis import redis_client

    url = get_settings().broker_url
    if not url:
        fail("RSN_BROKER_URL is not set: the stream lives on the broker's Redis")
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
        print_json(info)
        return
    _say(f"{key}: {info['length']} entries; dead letter {dead}: {info['dead']}")
    for g in groups:
        _say(f"  group {g['name']}: pending {g['pending']}, lag {g.get('lag')}, "
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
        print_json(rows)
        return
    for row in rows:
        _say(f"{row['id']}  from {row.get('original_id')}: {row.get('reason')}",
             markup=False)


# ------------------------------------------------------------------ carriers ----------

def _tenant_id(slug: str) -> int:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return tenant_id(s, slug, CREATE_TENANT_HINT)


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
        fail(f"provider must be one of {', '.join(PROVIDERS)}")
    secret = value or new_secret()
    tid = _tenant_id(tenant)
    with session_scope() as s:
        set_secret(s, tid, provider, secret)
    url = f"{get_settings().public_base_url.rstrip('/')}/v1/carriers/{provider}?tenant={tenant}"
    if provider == "shippo":
        url += f"&token={secret}"
    if json_out:
        print_json({"tenant": tenant, "provider": provider, "secret": secret, "url": url})
        return
    _say(f"webhook URL: {url}", markup=False)
    _say(f"secret:      {secret}", markup=False)


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
        print_json(rows)
        return
    for r in rows:
        _say(f"#{r['id']} {r['received_at']:%Y-%m-%d %H:%M} {r['tenant']} {r['provider']} "
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
        print_json(result)
        return
    _say(f"{result['published']} of {result['checked']} unmatched updates published")


def main() -> None:
    app = typer.Typer(no_args_is_help=True, add_completion=False,
                      pretty_exceptions_show_locals=False)
    register(app)
    run(app)


if __name__ == "__main__":
    main()
