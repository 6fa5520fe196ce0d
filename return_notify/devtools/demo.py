"""`return-notify demo`: a realistic burst of return events through the whole pipeline."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text

DEMO_TIMEOUT_S = 170.0


def _counts(session: Any, since: datetime, prefix: str) -> tuple[int, dict[str, tuple[int, int]]]:
    ingested = session.execute(text(
        "SELECT (SELECT count(*) FROM events WHERE received_at >= :s AND event_id LIKE :p) + "
        "(SELECT count(*) FROM rejected_events WHERE received_at >= :s AND event_id LIKE :p)"),
        {"s": since, "p": prefix + "%"}).scalar_one()
    per_channel = {}
    for ch, total, done in session.execute(text(
        "SELECT channel, count(*), count(*) FILTER (WHERE state IN "
        "('sent','delivered','failed','dead','suppressed','skipped')) FROM deliveries "
        "WHERE created_at >= :s GROUP BY channel ORDER BY channel"), {"s": since}):
        per_channel[ch] = (done, total)
    return ingested, per_channel


def run_demo(n_returns: int = 500, n_events: int = 2000, workers: int = 2,
             json_out: bool = False, providers: str = "sandbox") -> int:
    """``providers="local"``: email and SMS go through the real SendGrid and Twilio SDKs to
    the local provider servers (run in this process), which count what they accepted."""
    from contextlib import nullcontext

    from return_notify.devtools.local_providers import local_providers

    ctx = local_providers() if providers == "local" else nullcontext()
    with ctx as lp:
        return _run_demo(n_returns, n_events, workers, json_out, lp)


def _run_demo(n_returns: int, n_events: int, workers: int, json_out: bool, lp: Any) -> int:
    from return_notify.config.settings import get_settings
    from return_notify.devtools.customers import switch_on
    from return_notify.devtools.endpoints import servers
    from return_notify.devtools.processes import start_beat, start_worker
    from return_notify.devtools.sample_data import make_stream, stamp
    from return_notify.producer import publish_raw_batches

    console = Console(stderr=json_out)
    run_tag = datetime.now(UTC).strftime("%H%M%S") + "-"
    # sources that lag seconds to days, and customers who open, click and rate (insights)
    stream = make_stream(n_events=n_events, min_returns=n_returns, prefix=run_tag,
                         timeliness=True)
    console.print(f"[bold]return-notify demo[/]: {len(stream.events):,} events over "
                  f"{stream.returns:,} returns ({stream.duplicates} duplicates, "
                  f"{stream.out_of_order} out of order, {stream.invalid} invalid)")
    t_start = time.monotonic()
    with servers() as ep:
        console.print(("embedded Redis + PostgreSQL" if ep.embedded else "configured servers")
                      + f": {ep.broker_url.split('@')[-1]}  {ep.database_url.split('@')[-1]}")
        from return_notify.channels.registry import reset_channels
        from return_notify.storage.db import dispose_engine, session_scope
        from return_notify.storage.migrate import upgrade

        dispose_engine()
        reset_channels()
        upgrade()
        # The burst shows the pipeline end to end: quiet hours and throttles (which depend on
        # the time of day) would hold some messages back for hours, so they are off here.
        link_secret = get_settings().link_secret  # tracked and rating links in the messages
        env = ep.env(RSN_SANDBOX_TRANSIENT_FAILURE_RATE="0.02", RSN_QUIET_HOURS_ENABLED="false",
                     RSN_THROTTLE_MIN_INTERVALS="",
                     RSN_LINK_SECRET=link_secret.get_secret_value() if link_secret
                     else secrets.token_urlsafe(24))
        if lp is not None:
            env.update(lp.env())
            lp.twilio.set_failure_rate(0.02, "server_error")
            lp.sendgrid.set_failure_rate(0.02, "server_error")
            console.print(f"providers: SendGrid SDK → {lp.sendgrid.base_url}, "
                          f"Twilio SDK → {lp.twilio.base_url} (2 % transient failures)")
        logdir = tempfile.mkdtemp(prefix="rsn-demo-")
        procs = []
        flower: _FlowerStarter | None = None
        try:
            flower = _FlowerStarter(env, logdir, console)  # starts while the workers do
            procs.append(start_worker(env, concurrency=workers, logdir=logdir, loglevel="WARNING"))
            procs.append(start_beat(env, logdir=logdir))
            flower.join()
            since = datetime.now(UTC)
            with session_scope() as s:  # tracking and the survey on for the demo's tenants
                switch_on(s, {ev["tenant"] for ev in stream.events})
            events = stamp(stream.events)
            size = get_settings().ingest_batch_size
            t_pub = time.monotonic()
            publish_raw_batches([events[i : i + size] for i in range(0, len(events), size)])
            expected = stream.unique_valid + stream.invalid
            code = _watch(console, session_scope, since, run_tag, expected, json_out)
            elapsed = time.monotonic() - t_pub
            summary = _summary(session_scope, since, stream, elapsed)
            with session_scope() as s:  # what the customers did with the messages
                summary["insights"] = _insights(s, stream, since)
            if lp is not None:  # what the local SendGrid and Twilio servers accepted
                summary["duplicate_sends"] += lp.duplicate_sends()
                summary["provider_accepted"] = sum(lp.accepted_per_delivery().values())
            summary["total_s"] = round(time.monotonic() - t_start, 1)
            summary["logs"] = logdir
            _render_summary(console, summary, json_out)
            if summary["duplicate_sends"] or summary["non_terminal"]:
                code = code or 1
            return code
        finally:
            for p in reversed(procs):
                p.stop(15)
            if flower is not None:
                flower.stop()
            dispose_engine()


def _watch(console: Console, session_scope: Any, since: datetime, tag: str, expected: int,
           json_out: bool) -> int:
    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=json_out)
    ing = progress.add_task("events ingested", total=expected)
    chans: dict[str, Any] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    settled_since: float | None = None
    with Live(Group(progress), console=console, refresh_per_second=8, transient=False,
              redirect_stdout=False) if not json_out else _nullctx():
        while time.monotonic() < deadline:
            with session_scope() as s:
                ingested, per_channel = _counts(s, since, tag)
            progress.update(ing, completed=ingested)
            for ch, (done, total) in per_channel.items():
                if ch not in chans:
                    chans[ch] = progress.add_task(f"{ch} notifications", total=total)
                progress.update(chans[ch], completed=done, total=total)
            all_done = ingested >= expected and all(d == t for d, t in per_channel.values())
            if all_done:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > 0.6:
                    return 0
            else:
                settled_since = None
            time.sleep(0.25)
    console.print("[bold red]timed out[/] waiting for the burst to settle")
    return 1


class _FlowerStarter:
    """Flower for the demo: on port 5555 (or a free one), with per-run credentials printed
    at the start; the demo goes on without it if it cannot start."""

    def __init__(self, env: dict[str, str], logdir: str, console: Console) -> None:
        from return_notify.config.settings import get_settings

        configured = get_settings().flower_basic_auth
        self.auth = configured.get_secret_value() if configured else \
            f"demo:{secrets.token_urlsafe(9)}"
        self.port = _free_port(5555)
        user, _, password = self.auth.partition(":")
        shown = "from RSN_FLOWER_BASIC_AUTH" if configured else f"user [bold]{user}[/], " \
            f"password [bold]{password}[/]"
        console.print(f"Flower (live throughput per worker and task): "
                      f"[bold]http://127.0.0.1:{self.port}[/] ({shown}; open while the demo runs)")
        self._console, self._env, self._logdir = console, env, logdir
        self._proc: Any = None
        self._thread = threading.Thread(target=self._start, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        from return_notify.devtools.processes import start_flower

        try:
            self._proc = start_flower(self._env, port=self.port, basic_auth=self.auth,
                                      logdir=self._logdir, ready_timeout_s=30)
        except RuntimeError as exc:
            self._console.print(f"[yellow]Flower did not start ({str(exc).splitlines()[0]})[/]")

    def join(self) -> None:
        self._thread.join(35)

    def stop(self) -> None:
        self.join()
        if self._proc is not None:
            self._proc.stop(10)


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _summary(session_scope: Any, since: datetime, stream: Any, elapsed: float) -> dict[str, Any]:
    from return_notify.reporting.throughput import pipeline_stats

    with session_scope() as s:
        data = pipeline_stats(s, since=since)
        dups = s.execute(text(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM sandbox_messages "
            "WHERE received_at >= :s GROUP BY delivery_id HAVING count(*) > 1) x"),
            {"s": since}).scalar_one()
        non_terminal = s.execute(text(
            "SELECT count(*) FROM deliveries WHERE created_at >= :s AND state IN "
            "('pending','sending','retrying','scheduled')"), {"s": since}).scalar_one()
    # Measured, not assumed: what was published minus what the system stored or rejected.
    duplicates_ignored = len(stream.events) - data["events"]["accepted"] - data["events"]["rejected"]
    total_deliveries = data["deliveries"]["total"]
    return {
        "published": len(stream.events), "returns": stream.returns,
        "events_accepted": data["events"]["accepted"],
        "duplicates_ignored": duplicates_ignored,
        "stale_not_notified": data["events"]["stale"] + data["events"]["repeat"],
        "rejected": data["events"]["rejected"],
        "stats": data, "duplicate_sends": int(dups), "non_terminal": int(non_terminal),
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(len(stream.events) / elapsed, 1),
        "notifications_per_s": round(total_deliveries / elapsed, 1),
    }


def _insights(session: Any, stream: Any, since: datetime) -> dict[str, Any]:
    """Play the customers (opens, clicks, reads, ratings), then what the insights show."""
    from return_notify.devtools.customers import play
    from return_notify.reporting.insights import InsightFilter, effectiveness, recommend
    from return_notify.reporting.timing import time_split

    slugs = sorted({ev["tenant"] for ev in stream.events})
    played = play(session, stream, since, slugs)
    flt = InsightFilter(tenants=tuple(slugs), since=since)
    eff = effectiveness(session, flt)
    group = eff["groups"][0] if eff["groups"] else None
    split = time_split(session, flt)
    ranked = recommend(session, flt)
    return {
        "customers": played, "rated_returns": eff["rated_returns"],
        "satisfaction_by_time_to_update": [
            {"band": b["band"], "n": b["n"], "mean_score": b["mean_score"]}
            for b in (group["by_time_to_update"] if group else [])],
        "time_vs_score": group["time_vs_score"] if group else None,
        "channel_order": {r["milestone"]: r["order"] for r in ranked},
        # whether the first channel's click-rate interval is clear of the second's (None:
        # fewer than two channels with enough tracked notifications)
        "channel_clear_winner": {r["milestone"]: r["clear_winner"] for r in ranked},
        # channels left out of an order: fewer than MIN_SAMPLE tracked notifications there
        "channel_insufficient": {r["milestone"]: {i["channel"]: i["tracked"]
                                                  for i in r["insufficient"]} for r in ranked},
        "where_the_time_goes": split[0] if split else None,
    }


def _render_insights(console: Console, data: dict[str, Any]) -> None:
    from rich.table import Table

    c = data["customers"]
    console.print(f"customers: {c['open']:,} emails opened, {c['click']:,} links clicked, "
                  f"{c['read']:,} in-app items read, {data['rated_returns']:,} returns rated")
    table = Table(title="satisfaction by time to status update")
    for col in ("time to update", "rated", "mean score (95% CI)"):
        table.add_column(col, justify="left" if col == "time to update" else "right")
    for b in data["satisfaction_by_time_to_update"]:
        m = b["mean_score"]
        table.add_row(b["band"], str(b["n"]), f"{m['value']:.2f}" + (
            f" ({m['low']:.2f}-{m['high']:.2f})" if m["low"] is not None else ""))
    console.print(table)
    order = ", ".join(f"{m} {'>'.join(o)}" for m, o in data["channel_order"].items() if o)
    console.print(f"best channels by click rate: {order}")
    w = data["where_the_time_goes"]
    if w:
        console.print(f"where the time goes: source lag p50 {w['source_lag_s']['p50']:,.0f} s, "
                      f"pipeline p50 {w['pipeline_s']['p50']:,.2f} s "
                      f"({(w['upstream_share'] or 0) * 100:.1f} % upstream)")


def _render_summary(console: Console, s: dict[str, Any], json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(s, indent=2, default=str) + "\n")
        return
    from return_notify.reporting.tables import stats_tables

    extra = {
        "published (incl. duplicates, invalid)": f"{s['published']:,}",
        "duplicates ignored": f"{s['duplicates_ignored']:,}",
        "duplicate sends seen by provider": f"{s['duplicate_sends']:,}",
        "throughput": f"{s['events_per_s']:,} events/s, {s['notifications_per_s']:,} "
                      f"notifications/s ({s['elapsed_s']} s)",
    }
    for t in stats_tables(s["stats"], extra):
        console.print(t)
    if s.get("insights"):
        _render_insights(console, s["insights"])
    console.print(f"done in {s['total_s']} s; worker logs in {s['logs']}")
