"""The HTTP API for preferences, quiet hours and throttles, on real PostgreSQL.

Customer preferences take the tenant ingest key; quiet hours and the throttle are tenant
configuration and take principal keys with scoped roles: every endpoint is tested in both
directions (a regional manager for EU against US and EU quiet hours, a category manager
and a viewer against tenant-wide ones, the tenant key against all of them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.integration.api_helpers import PUBLIC_BASE_URL, ApiEnv, audit, make_principals, make_tenant

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("production_defaults")]


@pytest.fixture
def api(api_env: ApiEnv) -> Iterator[TestClient]:
    from return_notify.api.app import create_app

    with TestClient(create_app(), base_url=PUBLIC_BASE_URL) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_preferences_round_trip_and_tenant_isolation(api: TestClient) -> None:
    _, _, key = make_tenant()
    _, _, other = make_tenant()
    url = "/v1/customers/c-42/preferences"
    assert api.get(url).status_code == 401
    got = api.get(url, headers=auth(key))
    assert got.status_code == 200 and got.json() == {
        "customer_id": "c-42", "stored": False,
        "preferences": {"channels": {}, "milestones": {}, "preferred_channel": None,
                        "locale": None, "timezone": None, "tracking": None}}
    body = {"channels": {"sms": False}, "milestones": {"refund_processed": {"sms": True}},
            "preferred_channel": "email", "locale": "de-AT", "timezone": "Europe/Vienna",
            "tracking": False}
    put = api.put(url, json=body, headers=auth(key))
    assert put.status_code == 200, put.text
    got = api.get(url, headers=auth(key)).json()
    assert got["stored"] and got["preferences"] == body
    # another tenant's key sees its own (empty) customer c-42, never this one
    assert api.get(url, headers=auth(other)).json()["stored"] is False
    assert api.delete(url, headers=auth(key)).status_code == 204
    assert api.get(url, headers=auth(key)).json()["stored"] is False


def test_customer_preferences_take_the_tenant_key_not_a_principal_key(api: TestClient) -> None:
    # customer data is written by the retailer's backend with its ingest key
    world = make_world()
    url = "/v1/customers/c-9/preferences"
    for who in ("owner", "viewer"):
        assert api.get(url, headers=auth(world.keys[who])).status_code == 401
        assert api.put(url, json={"channels": {"sms": False}},
                       headers=auth(world.keys[who])).status_code == 401
    assert api.put(url, json={"channels": {"sms": False}},
                   headers=auth(world.tenant_key)).status_code == 200


@pytest.mark.parametrize("bad", [
    {"channels": {"fax": False}}, {"milestones": {"teleported": {"sms": False}}},
    {"preferred_channel": "pigeon"}, {"timezone": "Mars/Base"}, {"locale": "??"}, {"sms": False},
])
def test_invalid_preferences_are_422_with_the_field(api: TestClient, bad: dict[str, Any]) -> None:
    _, _, key = make_tenant()
    r = api.put("/v1/customers/c-1/preferences", json=bad, headers=auth(key))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "body"


# ------------------------------------------------------------------ RBAC world ---------

WHO = ("owner", "admin", "eu", "us", "elec", "viewer")  # of api_helpers.PRINCIPALS
SEEDED = ("*", "EU", "EU-DE", "US", "US-TX")  # quiet-hours configs every world starts with


@dataclass
class World:
    tenant_id: int
    slug: str
    tenant_key: str
    keys: dict[str, str]


def make_world() -> World:
    """A tenant with six principals and the quiet hours of ``SEEDED``, made by an operator."""
    from return_notify.access.principals import operator
    from return_notify.policy.quiet_hours import QuietHoursConfig
    from return_notify.policy.store import set_quiet_hours
    from return_notify.storage.db import session_scope

    tid, slug, tenant_key = make_tenant()
    keys, _ = make_principals(tid, slug, WHO)
    with session_scope() as s:
        op = operator(tid, slug, "test")
        for region in SEEDED:
            set_quiet_hours(s, tid, region, QuietHoursConfig(allowed="08:00-21:00"), op.actor)
    return World(tid, slug, tenant_key, keys)


@pytest.fixture
def world(api_env: ApiEnv) -> World:
    return make_world()


def stored_quiet_hours(tenant_id: int) -> dict[str, str]:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return {r: c["allowed"] for r, c in s.execute(text(
            "SELECT region, config FROM quiet_hours_configs WHERE tenant_id = :t"),
            {"t": tenant_id})}


# (principal, region, may read, may write): both directions
QUIET_PAIRS = [
    ("eu", "US", False, False), ("eu", "US-TX", False, False),
    ("us", "EU", False, False), ("us", "EU-DE", False, False),
    ("eu", "EU", True, True), ("eu", "EU-DE", True, True),
    ("us", "US", True, True), ("us", "US-TX", True, True),
    ("eu", "default", True, False), ("us", "default", True, False),  # tenant-wide
    ("elec", "default", True, False), ("elec", "EU", True, False),  # every category of EU
    ("viewer", "US", True, False), ("viewer", "default", True, False),
    ("owner", "EU", True, True), ("owner", "default", True, True),
    ("admin", "US-TX", True, True), ("admin", "default", True, True),
]
NEW = {"allowed": "09:00-20:00"}
QUIET_ENDPOINTS = {  # name: (method, path or None for the query form, body, verb, success)
    "get": ("GET", True, None, "read", 200),
    "query": ("GET", False, None, "read", 200),
    "put": ("PUT", True, NEW, "write", 200),
    "delete": ("DELETE", True, None, "write", 204),
}


@pytest.mark.parametrize("endpoint", list(QUIET_ENDPOINTS))
@pytest.mark.parametrize(("who", "region", "may_read", "may_write"), QUIET_PAIRS)
def test_quiet_hours_endpoints_both_directions(api: TestClient, world: World, endpoint: str,
                                               who: str, region: str, may_read: bool,
                                               may_write: bool) -> None:
    # given
    method, in_path, body, verb, ok = QUIET_ENDPOINTS[endpoint]
    allowed = may_read if verb == "read" else may_write
    key = "*" if region == "default" else region
    before = stored_quiet_hours(world.tenant_id)
    entries = len(audit(world.tenant_id, "quiet_hours"))
    # when
    if in_path:
        r = api.request(method, f"/v1/quiet-hours/{region.lower()}", json=body,
                        headers=auth(world.keys[who]))
    else:
        r = api.get("/v1/quiet-hours", params={"region": region},
                    headers=auth(world.keys[who]))
    # then
    assert r.status_code == (ok if allowed else 403), r.text
    after = stored_quiet_hours(world.tenant_id)
    log = audit(world.tenant_id, "quiet_hours")
    if not allowed:
        assert "may not" in r.json()["detail"]
    if not allowed or verb == "read":
        assert after == before and len(log) == entries
        if allowed and endpoint == "get":
            assert r.json()["region"] == key and r.json()["stored"] is True
            assert r.json()["config"]["allowed"] == "08:00-21:00"
        if allowed and endpoint == "query" and key != "*":
            assert r.json()["effective"]["region"] == key
        return
    assert len(log) == entries + 1
    entry = log[-1]
    assert (entry["actor"], entry["resource_id"]) == (who, key)
    assert entry["region"] == (None if key == "*" else key)
    assert entry["before"]["allowed"] == "08:00-21:00"
    if endpoint == "put":
        assert after == {**before, key: "09:00-20:00"}
        assert entry["action"] == "quiet_hours.update" and entry["after"]["allowed"] == "09:00-20:00"
    else:
        assert key not in after and set(after) == set(before) - {key}
        assert entry["action"] == "quiet_hours.delete" and entry["after"] is None


@pytest.mark.parametrize(("who", "visible"), [
    ("eu", {"*", "EU", "EU-DE"}), ("us", {"*", "US", "US-TX"}),
    ("elec", set(SEEDED)), ("viewer", set(SEEDED)), ("owner", set(SEEDED)),
])
def test_quiet_hours_list_and_audit_show_only_what_the_principal_may_read(
        api: TestClient, world: World, who: str, visible: set[str]) -> None:
    listed = api.get("/v1/quiet-hours", headers=auth(world.keys[who]))
    assert listed.status_code == 200 and set(listed.json()["configs"]) == visible
    assert listed.json()["effective"] is None
    entries = api.get("/v1/admin/audit", params={"resource": "quiet_hours"},
                      headers=auth(world.keys[who])).json()["entries"]
    assert {e["resource_id"] for e in entries} == visible
    assert all(e["action"] == "quiet_hours.create" and e["actor"] == "cli:test" for e in entries)


# (principal, may write): every principal reads the tenant-wide throttle
THROTTLE_WRITERS = [("owner", True), ("admin", True), ("eu", False), ("us", False),
                    ("elec", False), ("viewer", False)]


@pytest.mark.parametrize(("who", "may_write"), THROTTLE_WRITERS)
def test_throttle_endpoints_both_directions(api: TestClient, world: World, who: str,
                                            may_write: bool) -> None:
    # given
    key = auth(world.keys[who])
    # when / then: everyone reads
    got = api.get("/v1/throttle", headers=key)
    assert got.status_code == 200 and got.json()["tenant"] is None
    # only owners and admins write, and each change is audited
    put = api.put("/v1/throttle", json={"min_interval_s": {"*:sms": "10m"}}, headers=key)
    assert put.status_code == (200 if may_write else 403), put.text
    tenant_cfg = api.get("/v1/throttle", headers=key).json()["tenant"]
    assert tenant_cfg == ({"min_interval_s": {"*:sms": 600.0}, "digest_window_s": {}}
                          if may_write else None)
    gone = api.delete("/v1/throttle", headers=key)
    assert gone.status_code == (204 if may_write else 403)
    assert api.get("/v1/throttle", headers=key).json()["tenant"] is None
    log = audit(world.tenant_id, "throttle")
    if may_write:
        assert [(e["action"], e["actor"]) for e in log] == [("throttle.create", who),
                                                           ("throttle.delete", who)]
        assert log[0]["before"] is None and log[0]["after"]["min_interval_s"] == {"*:sms": 600.0}
        assert log[1]["before"] == log[0]["after"] and log[1]["after"] is None
    else:
        assert log == [] and "may not" in put.json()["detail"]


def test_throttle_writes_are_denied_even_when_a_config_exists(api: TestClient,
                                                              world: World) -> None:
    owner, eu = auth(world.keys["owner"]), auth(world.keys["eu"])
    assert api.put("/v1/throttle", json={"digest_window_s": {"email": "2m"}},
                   headers=owner).status_code == 200
    assert api.delete("/v1/throttle", headers=eu).status_code == 403
    assert api.get("/v1/throttle", headers=eu).json()["tenant"]["digest_window_s"] == {
        "email": 120.0}


ADMIN_ROUTES = [("GET", "/v1/quiet-hours"), ("GET", "/v1/quiet-hours/default"),
                ("GET", "/v1/quiet-hours/EU"), ("PUT", "/v1/quiet-hours/EU"),
                ("DELETE", "/v1/quiet-hours/EU"), ("GET", "/v1/throttle"),
                ("PUT", "/v1/throttle"), ("DELETE", "/v1/throttle")]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_tenant_ingest_key_and_no_key_are_401_on_configuration(api: TestClient, world: World,
                                                               method: str, path: str) -> None:
    body: dict[str, Any] | None = {} if method == "PUT" else None
    r = api.request(method, path, json=body, headers=auth(world.tenant_key))
    assert r.status_code == 401 and "principal key" in r.json()["detail"]
    assert api.request(method, path, json=body).status_code == 401
    assert api.request(method, path, json=body,
                       headers=auth("rsnp_abc_def")).status_code == 401
    assert stored_quiet_hours(world.tenant_id)["EU"] == "08:00-21:00"


def test_tenants_are_isolated(api: TestClient, world: World) -> None:
    other = make_world()
    owner = auth(other.keys["owner"])
    assert api.put("/v1/quiet-hours/EU", json=NEW, headers=owner).status_code == 200
    assert api.delete("/v1/quiet-hours/US", headers=owner).status_code == 204
    assert api.put("/v1/throttle", json={"digest_window_s": {"sms": 60}},
                   headers=owner).status_code == 200
    assert stored_quiet_hours(world.tenant_id) == dict.fromkeys(SEEDED, "08:00-21:00")
    assert api.get("/v1/throttle", headers=auth(world.keys["owner"])).json()["tenant"] is None


def test_malformed_regions_are_422(api: TestClient, world: World) -> None:
    owner = auth(world.keys["owner"])
    for region in ("US--FL", "-EU", "EU-"):
        assert api.put(f"/v1/quiet-hours/{region}", json=NEW,
                       headers=owner).status_code == 422, region
    assert api.get("/v1/quiet-hours", params={"region": "US--FL"},
                   headers=owner).status_code == 422
    assert api.get("/v1/quiet-hours/a b", headers=owner).status_code in (404, 422)


def test_quiet_hours_per_region_with_legal_floor(api: TestClient) -> None:
    world = make_world()
    key = world.keys["owner"]
    r = api.put("/v1/quiet-hours/default", json={"allowed": "07:00-22:00"}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["allowed"]["mon"] == "07:00-22:00" and r.json()["source"] == "tenant:*"
    # in Florida the legal floor still applies; a region of its own can say otherwise
    fl = api.get("/v1/quiet-hours", params={"region": "US-FL"}, headers=auth(key)).json()
    assert fl["effective"]["allowed"]["mon"] == "08:00-20:00"
    assert fl["legal_windows"]["US-TX"]["sun"] == "12:00-21:00"
    r = api.put("/v1/quiet-hours/us-tx", json={"allowed": "10:00-19:00", "days": {"sat": None},
                                                "channels": ["sms", "email"]}, headers=auth(key))
    assert r.status_code == 200
    assert r.json()["allowed"]["sat"] is None and r.json()["allowed"]["sun"] == "12:00-19:00"
    assert r.json()["channels"] == ["email", "sms"]
    listed = api.get("/v1/quiet-hours", headers=auth(key)).json()
    assert set(listed["configs"]) == set(SEEDED)
    assert api.put("/v1/quiet-hours/EU", json={"allowed": "21:00-08:00"},
                   headers=auth(key)).status_code == 422
    assert api.delete("/v1/quiet-hours/US-TX", headers=auth(key)).status_code == 204
    assert api.delete("/v1/quiet-hours/US-TX", headers=auth(key)).status_code == 404
    one = api.get("/v1/quiet-hours/us-tx", headers=auth(key)).json()
    assert (one["region"], one["stored"], one["config"]) == ("US-TX", False, None)
    assert one["effective"]["source"] != "tenant:US-TX"
    # putting the same config again is no change: no audit entry
    n = len(audit(world.tenant_id, "quiet_hours"))
    assert api.put("/v1/quiet-hours/default", json={"allowed": "07:00-22:00"},
                   headers=auth(key)).status_code == 200
    assert len(audit(world.tenant_id, "quiet_hours")) == n


def test_throttle_overrides_merge_over_defaults(api: TestClient) -> None:
    key = make_world().keys["admin"]
    got = api.get("/v1/throttle", headers=auth(key)).json()
    assert got["tenant"] is None and got["effective"]["min_interval_s"]["in_transit:sms"] == 21600
    r = api.put("/v1/throttle", json={"min_interval_s": {"*:sms": "10m"},
                                      "digest_window_s": {"email": "2m"}}, headers=auth(key))
    assert r.status_code == 200, r.text
    eff = r.json()["effective"]
    assert eff["min_interval_s"] == {"in_transit:sms": 21600, "*:sms": 600}
    assert eff["digest_window_s"] == {"email": 120}
    assert api.put("/v1/throttle", json={"min_interval_s": {"sms": 5}},
                   headers=auth(key)).status_code == 422
    assert api.delete("/v1/throttle", headers=auth(key)).status_code == 204
    assert api.get("/v1/throttle", headers=auth(key)).json()["tenant"] is None
