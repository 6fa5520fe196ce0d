"""``GET /v1/stats``: the KPIs of ``compute_kpis`` (and of ``stats --json``) for the caller's
tenant, limited to a manager's regions or categories; 401/403/422 with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from return_notify.reporting.kpis import ReturnScope, compute_kpis
from return_notify.storage.db import session_scope
from tests.helpers import event
from tests.integration.api_helpers import ApiEnv, make_principals, make_tenant

pytestmark = pytest.mark.integration


@dataclass
class World:
    slug: str
    tenant_key: str
    keys: dict[str, str]
    other: str


def _drive(tenant: str, events: list[dict[str, Any]]) -> None:
    """Ingest and deliver, as the workers would (sandbox providers)."""
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ids = dict(ingest_batch(s, events).deliveries)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, get_channel(ch), get_settings())


@pytest.fixture(scope="module")
def world(api_env: ApiEnv) -> World:
    tid, slug, tenant_key = make_tenant()
    keys, _ = make_principals(tid, slug, ("owner", "viewer", "eu", "us", "elec"))
    at = datetime.now(UTC) - timedelta(minutes=5)
    evs = [event("label_created", tenant=slug, at=at) for _ in range(3)]  # US, apparel
    evs += [event("label_created", tenant=slug, at=at, region="EU-DE",
                  product_category="electronics") for _ in range(2)]
    evs.append(event("return_approved", tenant=slug, at=at, region="eu-fr",
                     email="fail-permanent@example.com", phone=None))
    evs.append(event("return_initiated", tenant=slug, at=at, region="EUR"))  # not in EU
    _drive(slug, evs)
    _, other, _ = make_tenant()
    _drive(other, [event("label_created", tenant=other, at=at, region="EU-DE")])
    return World(slug, tenant_key, keys, other)


def get(client: TestClient, key: str | None, **params: str) -> Any:
    """The KPIs alone (``insights=none``: test_stats_insights.py checks the insights)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.get("/v1/stats", params={"insights": "none", **params}, headers=headers)


def kpis(tenant: str, **kw: Any) -> dict[str, Any]:
    with session_scope() as s:
        return json.loads(json.dumps(compute_kpis(s, tenant=tenant, **kw), default=str))


def test_an_owner_gets_the_kpis_of_its_tenant_as_the_cli_prints_them(
    client: TestClient, world: World, api_env: ApiEnv,
) -> None:
    # given
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    # when
    everything = get(client, world.keys["owner"])
    recent = get(client, world.keys["owner"], since=since, period="month")
    # then: compute_kpis' numbers, for this tenant only
    assert everything.status_code == 200, everything.text
    assert everything.json() == kpis(world.slug)
    assert recent.json() == kpis(world.slug, since=datetime.fromisoformat(since), period="month")
    body = everything.json()
    assert [r["key"] for r in body["success"]["by_tenant"]] == [world.slug]
    assert {r["key"] for r in body["success"]["by_region"]} == {"US", "EU-DE", "eu-fr", "EUR"}
    # label_created: 3 channels each; return_approved without a phone and return_initiated: 2
    assert sum(r["total"] for r in body["success"]["by_channel"]) == 3 * 3 + 2 * 3 + 2 + 2
    # and the same numbers as `return-notify stats --json` (its kpis object)
    cli = subprocess.run(
        [sys.executable, "-m", "return_notify.cli", "stats", "--json", "--tenant", world.slug,
         "--since", since],
        env={**os.environ, **api_env.env()},
        capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)["kpis"]
    printed["completion"]["period"] = "month"  # the CLI groups cohorts by week
    assert {k: v for k, v in printed.items() if k != "completion"} == {
        k: v for k, v in recent.json().items() if k != "completion"}
    assert printed["completion"]["total"] == recent.json()["completion"]["total"]


def test_a_regional_manager_sees_only_its_regions(client: TestClient, world: World) -> None:
    # when
    mine = get(client, world.keys["eu"])
    narrowed = get(client, world.keys["eu"], region="eu-de")
    # then: EU covers EU-DE and eu-fr, not EUR nor US
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body == kpis(world.slug, scope=ReturnScope(("EU",), ()))
    assert {r["key"] for r in body["success"]["by_region"]} == {"EU-DE", "eu-fr"}
    assert sum(r["total"] for r in body["success"]["by_channel"]) == 2 * 3 + 2
    assert body["filters"]["regions"] == ["EU"]
    assert body["load"]["events"] == 3
    assert narrowed.json() == kpis(world.slug, scope=ReturnScope(("EU-DE",), ()))
    assert {r["key"] for r in narrowed.json()["success"]["by_region"]} == {"EU-DE"}
    # out of its scope: 403 with the reason
    for region in ("US", "EUR"):
        r = get(client, world.keys["eu"], region=region)
        assert r.status_code == 403 and "may not read stats for region" in r.json()["detail"]
    us = get(client, world.keys["us"]).json()
    assert {r["key"] for r in us["success"]["by_region"]} == {"US"}


def test_the_cli_narrows_by_region_and_category_like_the_api(
    client: TestClient, world: World, api_env: ApiEnv,
) -> None:
    env = {**os.environ, **api_env.env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "return_notify.cli", "stats", "--json",
                               "--tenant", world.slug, *args], env=env, capture_output=True,
                              text=True, timeout=60)

    # when: the owner narrows to EU, as `GET /v1/stats?region=EU` does
    eu = cli("--region", "eu")
    api = get(client, world.keys["owner"], region="EU")
    # then: the same KPIs, only EU-DE and eu-fr
    assert eu.returncode == 0, eu.stderr
    printed = json.loads(eu.stdout)["kpis"]
    assert printed == api.json() == kpis(world.slug, scope=ReturnScope(("EU",), ()))
    assert {r["key"] for r in printed["success"]["by_region"]} == {"EU-DE", "eu-fr"}
    # bad input: a clear error and exit 1, nothing printed as JSON
    bad_since, bad_region = cli("--since", "yesterday"), cli("--region", "EU--DE")
    assert bad_since.returncode == 1 and "use a duration like 15m" in bad_since.stderr
    assert bad_region.returncode == 1 and "EU--DE" in bad_region.stderr
    assert bad_since.stdout == bad_region.stdout == ""


def test_a_category_manager_sees_only_its_categories(client: TestClient, world: World) -> None:
    body = get(client, world.keys["elec"]).json()
    assert body == kpis(world.slug, scope=ReturnScope((), ("electronics",)))
    assert sum(r["total"] for r in body["success"]["by_channel"]) == 2 * 3
    r = get(client, world.keys["elec"], category="apparel")
    assert r.status_code == 403 and "category apparel" in r.json()["detail"]
    # an unscoped principal may narrow to any category or region
    viewer = get(client, world.keys["viewer"], category="Apparel", region="US")
    assert viewer.status_code == 200
    assert viewer.json() == kpis(world.slug, scope=ReturnScope(("US",), ("apparel",)))


def test_stats_need_a_valid_principal_key(client: TestClient, world: World) -> None:
    assert get(client, None).status_code == 401
    r = get(client, world.tenant_key)  # the tenant's ingest key administers nothing
    assert r.status_code == 401 and "principal key" in r.json()["detail"]
    assert get(client, "rsnp_000000000000_" + "0" * 48).status_code == 401


def test_bad_filters_are_422_with_the_accepted_forms(client: TestClient, world: World) -> None:
    r = get(client, world.keys["owner"], since="yesterday")
    assert r.status_code == 422 and "15m, 2h, 7d" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["query", "since"]
    assert get(client, world.keys["owner"], region="E U!").status_code == 422
    assert get(client, world.keys["owner"], period="year").status_code == 422


def test_no_query_causes_a_server_error(world: World) -> None:
    # generated queries (odd durations, regions, categories, periods) with an owner's key
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    from return_notify.api.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operation = next(r.ok() for r in schema.get_all_operations()
                     if r.ok().path == "/v1/stats")

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        headers = {**(case.headers or {}), "Authorization": f"Bearer {world.keys['owner']}"}
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    fuzz()
