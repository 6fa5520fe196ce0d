"""Response times of the reads that grow with history: the sweeper's scan, ``stats --json``,
``GET /v1/stats`` (also scoped: a region, a category, a manager of two regions) and
``report``, and the size of each monthly partition (``history_bench`` generates the
history first for ``bench --history N``).

``measure_reads()`` times each read ``repeat`` times after one warm-up run and reports the
median, in-process (the query and rendering work of the command) and, with ``cli=True``,
as the ``return-notify`` command a person runs (Python start-up and imports included).
``GET /v1/stats`` goes through the whole HTTP stack in-process (FastAPI, authentication
with a principal key of the busiest tenant's owner, the KPI queries, JSON encoding).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: caches, connections, imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4)


def _busiest_tenant() -> tuple[int, str]:
    """The tenant with the most returns (one is made on an empty database)."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        row = s.execute(text(
            "SELECT t.id, t.slug FROM tenants t ORDER BY (SELECT count(*) FROM returns r "
            "WHERE r.tenant_id = t.id) DESC, t.id LIMIT 1")).first()
        if row is None:
            row = s.execute(text("INSERT INTO tenants (slug) VALUES ('history-bench') "
                                 "RETURNING id, slug")).one()
    return int(row[0]), str(row[1])


def _owner_key(tenant_id: int, slug: str) -> str:
    import uuid

    from return_notify.access.principals import create_principal, operator
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        _, key = create_principal(s, operator(tenant_id, slug, "history-bench"),
                                  f"bench-{uuid.uuid4().hex[:8]}", "owner")
    return key


def _scopes(tenant_id: int) -> tuple[list[str], str | None]:
    """The tenant's top-level regions (busiest first) and its busiest product category."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        regions = [r for (r,) in s.execute(text(
            "SELECT split_part(upper(region), '-', 1) FROM returns WHERE tenant_id = :t "
            "AND region IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1"), {"t": tenant_id})]
        category = s.execute(text(
            "SELECT lower(product_category) FROM returns WHERE tenant_id = :t AND "
            "product_category IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"),
            {"t": tenant_id}).scalar()
    return regions, category


def _manager_key(tenant_id: int, slug: str, regions: list[str]) -> str:
    import uuid

    from return_notify.access.principals import create_principal, operator
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        _, key = create_principal(s, operator(tenant_id, slug, "history-bench"),
                                  f"bench-rm-{uuid.uuid4().hex[:8]}", "regional_manager",
                                  regions=regions)
    return key


def measure_reads(repeat: int = 3, cli: bool = False) -> dict[str, Any]:
    """Median seconds of each read against ``RSN_DATABASE_URL``, with the partition sizes."""
    from fastapi.testclient import TestClient

    from return_notify.api.app import create_app
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.maintenance import due_deliveries
    from return_notify.reporting.html import render_report
    from return_notify.reporting.reads import compute_kpis, pipeline_stats
    from return_notify.storage.db import get_engine, session_scope
    from return_notify.storage.partitions import list_partitions

    lease = get_settings().lease_s
    out: dict[str, Any] = {}

    def sweep() -> None:
        with session_scope() as s:
            due_deliveries(s, lease)

    def stats_json() -> None:
        with session_scope() as s:
            data = pipeline_stats(s)
            data["kpis"] = compute_kpis(s)

    def report() -> None:
        with session_scope() as s:
            render_report(compute_kpis(s))

    out["sweep_s"] = _median_s(sweep, repeat)
    out["stats_json_s"] = _median_s(stats_json, repeat)
    out["report_s"] = _median_s(report, repeat)
    tenant = _busiest_tenant()
    key = _owner_key(*tenant)
    with TestClient(create_app()) as client:
        def api() -> None:
            r = client.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()

        out["api_stats_s"] = _median_s(api, repeat)
        # scoped: ?region= (its sub-regions), ?category=, a manager of two regions
        regions, category = _scopes(tenant[0])
        scoped = {"region": f"?region={regions[0]}" if regions else None,
                  "category": f"?category={category}" if category else None}
        keys = {"region": key, "category": key}
        if len(regions) > 1:
            scoped["two_regions"] = ""
            keys["two_regions"] = _manager_key(*tenant, regions[:2])
        for name, query in scoped.items():
            if query is None:
                continue

            def api_scoped(q: str = query, k: str = keys[name]) -> None:
                r = client.get(f"/v1/stats{q}", headers={"Authorization": f"Bearer {k}"})
                r.raise_for_status()

            out[f"api_stats_{name}_s"] = _median_s(api_scoped, repeat)
        out["api_scopes"] = {**scoped, "two_regions": ",".join(regions[:2])}
    out["api_tenant"] = tenant[1]
    if cli:
        out.update(_cli_times(repeat))
    with get_engine().connect() as conn:
        parts = [p.as_dict() for p in list_partitions(conn)]
        out["database_bytes"] = int(conn.execute(text(
            "SELECT pg_database_size(current_database())")).scalar_one())
        out["rows"] = {t: int(conn.execute(text(
            f"SELECT greatest(sum(c.reltuples), 0)::bigint FROM pg_inherits i JOIN pg_class c "
            f"ON c.oid = i.inhrelid WHERE i.inhparent = '{t}'::regclass")).scalar_one() or 0)
            for t in ("events", "deliveries", "delivery_attempts")}
    out["partitions"] = parts
    return out


def _cli_times(repeat: int) -> dict[str, float]:
    exe = [sys.executable, "-m", "return_notify.cli.main"]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.html")

        def run(args: list[str]) -> Callable[[], None]:
            def command() -> None:
                subprocess.run([*exe, *args], env=env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            return command

        return {"stats_cli_s": _median_s(run(["stats", "--json"]), repeat),
                "report_cli_s": _median_s(run(["report", "--out", report]), repeat)}
