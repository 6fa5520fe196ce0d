"""Events in: ``emit`` (publish a JSON Lines file) and ``schema`` (the event's JSON Schema).

Both are top-level commands (``main`` lists them); the producer and the event model are
imported only when one runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from return_notify.cli.common import JsonOpt, console, err_console, fail, print_json, require_urls


def emit(
    file: Annotated[str, typer.Argument(help="JSON Lines file of events, or - for stdin.")],
    batch_size: Annotated[int | None, typer.Option(help="Events per broker message.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish events from a JSON Lines file; invalid lines are reported, valid ones go in."""
    require_urls(db=False)
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
            print_json({"published": published, "invalid": errors, "error": str(exc)})
        fail(str(exc), code=3)
    if json_out:
        print_json({"published": published, "invalid": errors})
    else:
        console.print(f"published [bold]{published}[/] events; {len(errors)} invalid lines")
        for e in errors[:50]:
            for fe in e["errors"]:
                console.print(f"  line {e['line']}: [yellow]{fe['field']}[/]: {fe['message']}")
    if errors:
        raise typer.Exit(2)


def schema(out: Annotated[str | None, typer.Option(help="Write to this file.")] = None) -> None:
    """Print the JSON Schema of the v1 return event (for producers in other languages)."""
    from return_notify.events import event_json_schema

    text = json.dumps(event_json_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
