"""Admin API for rules, principals and the audit log: every endpoint, both directions.

Each test gets a fresh tenant with seven principals (owner, admin, regional managers for
EU and US, category managers for electronics and apparel, a viewer) and four
``label_created`` rules: ``us`` (region US), ``eu`` (region EU-DE), ``elec`` (category
electronics, any region) and ``app`` (category apparel, any region).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from return_notify.access.principals import operator
from return_notify.rules.store import RuleSpec, create_rule
from return_notify.storage.db import session_scope
from tests.integration.api_helpers import PRINCIPALS, ApiEnv, call, make_principals, make_tenant

pytestmark = pytest.mark.integration

RULES = {"us": ("US", None, ["sms"]), "eu": ("EU-DE", None, ["email"]),
         "elec": (None, "electronics", ["email"]), "app": (None, "apparel", ["inapp"])}
EVERYONE = set(RULES)


@dataclass
class World:
    tenant_id: int
    slug: str
    tenant_key: str
    keys: dict[str, str]
    principal_ids: dict[str, int]
    rules: dict[str, int]


def make_world() -> World:
    tid, slug, tenant_key = make_tenant()
    keys, pids = make_principals(tid, slug)
    rules = {}
    with session_scope() as s:
        op = operator(tid, slug, "test")
        for name, (region, cat, channels) in RULES.items():
            spec = RuleSpec.build("label_created", channels, region, cat)
            rules[name] = create_rule(s, tid, spec, op.actor).id
    return World(tid, slug, tenant_key, keys, pids, rules)


@pytest.fixture
def world(api_env: ApiEnv) -> World:
    return make_world()


def rule_row(rule_id: int) -> dict[str, Any] | None:
    with session_scope() as s:
        row = s.execute(text("SELECT * FROM notification_rules WHERE id = :i"),
                        {"i": rule_id}).mappings().first()
    return dict(row) if row else None


def audit_actions(rule_id: int) -> list[str]:
    with session_scope() as s:
        return list(s.execute(text(
            "SELECT action FROM audit_log WHERE resource = 'rules' AND resource_id = :r "
            "ORDER BY id"), {"r": str(rule_id)}).scalars())


# (principal, rule, may read, may write): both directions for regions and categories
PAIRS = [
    ("eu", "us", False, False), ("us", "eu", False, False),
    ("elec", "app", False, False), ("app", "elec", False, False),
    ("eu", "eu", True, True), ("us", "us", True, True),
    ("elec", "elec", True, True), ("app", "app", True, True),
    ("eu", "elec", True, False),  # region-ANY rule: applies in EU (readable), not EU's alone
    ("elec", "us", True, False),  # category-ANY rule: applies to electronics, not theirs alone
    ("viewer", "us", True, False), ("viewer", "app", True, False),
    ("owner", "us", True, True), ("admin", "app", True, True),
]
RULE_ENDPOINTS = {  # name: (method, path suffix, body, verb, success status)
    "get": ("GET", "", None, "read", 200),
    "patch": ("PATCH", "", {"channels": ["email", "inapp"], "template": "friendly"}, "write", 200),
    "disable": ("POST", "/disable", None, "write", 200),
    "delete": ("DELETE", "", None, "write", 204),
}


@pytest.mark.parametrize("endpoint", list(RULE_ENDPOINTS))
@pytest.mark.parametrize(("who", "rule", "may_read", "may_write"), PAIRS)
def test_rule_endpoints_both_directions(client: TestClient, world: World, endpoint: str, who: str,
                                        rule: str, may_read: bool, may_write: bool) -> None:
    # given
    method, suffix, body, verb, ok = RULE_ENDPOINTS[endpoint]
    rule_id = world.rules[rule]
    allowed = may_read if verb == "read" else may_write
    # when
    r = call(client, world.keys[who], method, f"/v1/admin/rules/{rule_id}{suffix}", body)
    # then
    assert r.status_code == (ok if allowed else 403), r.text
    row = rule_row(rule_id)
    if not allowed:
        assert "may not" in r.json()["detail"]
        assert row is not None and row["version"] == 1 and row["enabled"]
        assert audit_actions(rule_id) == ["rule.create"]
    elif endpoint == "delete":
        assert row is None and audit_actions(rule_id) == ["rule.create", "rule.delete"]
    elif endpoint != "get":
        assert row is not None and row["version"] == 2
        assert audit_actions(rule_id) == ["rule.create", f"rule.{endpoint.replace('patch', 'update')}"]


@pytest.mark.parametrize(("who", "scope", "allowed"), [
    ("eu", {"region": "US"}, False), ("eu", {"region": "EU-FR"}, True),
    ("us", {"region": "EU-DE"}, False), ("us", {"region": "US-CA"}, True),
    ("elec", {"category": "apparel"}, False), ("elec", {"category": "electronics"}, True),
    ("app", {"category": "electronics"}, False), ("app", {"category": "apparel", "region": "US"}, True),
    ("eu", {}, False), ("eu", {"region": "*", "category": "apparel"}, False),
    ("elec", {"region": "US"}, False),  # every category of US: not electronics' alone
    ("viewer", {"region": "US"}, False),
    ("owner", {}, True), ("admin", {"region": "US", "category": "apparel"}, True),
])
def test_create_both_directions(client: TestClient, world: World, who: str,
                                scope: dict[str, str], allowed: bool) -> None:
    body = {"milestone": "return_approved", "channels": ["email"], **scope}
    r = call(client, world.keys[who], "POST", "/v1/admin/rules", body)
    assert r.status_code == (201 if allowed else 403), r.text
    with session_scope() as s:
        n = s.execute(text("SELECT count(*) FROM notification_rules WHERE tenant_id = :t AND "
                           "milestone = 'return_approved'"), {"t": world.tenant_id}).scalar()
    assert n == (1 if allowed else 0)
    if allowed:
        assert r.json()["created_by"] == who and audit_actions(r.json()["id"]) == ["rule.create"]


@pytest.mark.parametrize(("who", "params", "allowed"), [
    ("eu", {"region": "US"}, False), ("eu", {"region": "EU-DE"}, True),
    ("us", {"region": "EU-DE"}, False), ("us", {"region": "US"}, True),
    ("elec", {"region": "US", "category": "apparel"}, False),
    ("elec", {"region": "US", "category": "electronics"}, True),
    ("app", {"category": "electronics"}, False), ("app", {"category": "apparel"}, True),
    ("viewer", {"region": "US", "category": "apparel"}, True),
    ("owner", {"region": "EU-DE", "category": "electronics"}, True),
])
def test_explain_both_directions(client: TestClient, world: World, who: str,
                                 params: dict[str, str], allowed: bool) -> None:
    r = call(client, world.keys[who], "GET", "/v1/admin/rules/explain",
             params={"milestone": "label_created", **params})
    assert r.status_code == (200 if allowed else 403), r.text


def test_explain_shows_the_winner_and_why_each_candidate_lost(client: TestClient,
                                                              world: World) -> None:
    r = call(client, world.keys["owner"], "GET", "/v1/admin/rules/explain",
             params={"milestone": "label_created", "region": "eu-de", "category": "Electronics"})
    body = r.json()
    assert (body["region"], body["category"]) == ("EU-DE", "electronics")
    assert body["result"]["rule_id"] == world.rules["eu"] and body["result"]["channels"] == ["email"]
    outcome = {(c["rule"] or {}).get("id"): c["outcome"] for c in body["candidates"]}
    assert outcome == {world.rules["eu"]: "won", world.rules["elec"]: "lost",
                       world.rules["us"]: "not_applicable", world.rules["app"]: "not_applicable",
                       None: "default_unused"}
    # an EU manager's explanation leaves out the US rule it may not read
    r = call(client, world.keys["eu"], "GET", "/v1/admin/rules/explain",
             params={"milestone": "label_created", "region": "EU-DE"})
    ids = {(c["rule"] or {}).get("id") for c in r.json()["candidates"]}
    assert world.rules["us"] not in ids and world.rules["eu"] in ids


@pytest.mark.parametrize(("who", "visible"), [
    ("eu", {"eu", "elec", "app"}), ("us", {"us", "elec", "app"}),
    ("elec", {"us", "eu", "elec"}), ("app", {"us", "eu", "app"}),
    ("viewer", EVERYONE), ("owner", EVERYONE), ("admin", EVERYONE),
])
def test_list_and_audit_show_only_what_the_principal_may_read(
        client: TestClient, world: World, who: str, visible: set[str]) -> None:
    names = {v: k for k, v in world.rules.items()}
    listed = call(client, world.keys[who], "GET", "/v1/admin/rules").json()
    assert {names[r["id"]] for r in listed} == visible
    entries = call(client, world.keys[who], "GET", "/v1/admin/audit").json()["entries"]
    rule_entries = {names[int(e["resource_id"])] for e in entries if e["resource"] == "rules"}
    assert rule_entries == visible
    principal_entries = [e for e in entries if e["resource"] == "principals"]
    assert bool(principal_entries) is (who in ("owner", "admin"))


def test_list_filters(client: TestClient, world: World) -> None:
    key = world.keys["owner"]
    assert [r["id"] for r in call(client, key, "GET", "/v1/admin/rules",
                                  params={"region": "us"}).json()] == [world.rules["us"]]
    any_region = call(client, key, "GET", "/v1/admin/rules", params={"region": "*"}).json()
    assert {r["id"] for r in any_region} == {world.rules["elec"], world.rules["app"]}
    assert call(client, key, "GET", "/v1/admin/rules",
                params={"milestone": "in_transit"}).json() == []


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_me(client: TestClient, world: World, who: str) -> None:
    body = call(client, world.keys[who], "GET", "/v1/admin/me").json()
    assert (body["name"], body["role"], body["tenant"]) == (who, PRINCIPALS[who][0], world.slug)


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_principals_endpoints_are_for_owners_and_admins(client: TestClient, world: World,
                                                        who: str) -> None:
    key, admin_like = world.keys[who], who in ("owner", "admin")
    viewer_id = world.principal_ids["viewer"]
    r = call(client, key, "GET", "/v1/admin/principals")
    assert r.status_code == (200 if admin_like else 403)
    if admin_like:
        assert {p["name"] for p in r.json()} == set(PRINCIPALS)
        assert all("api_key" not in p and p["key_prefixes"] for p in r.json())
    r = call(client, key, "POST", "/v1/admin/principals",
             {"name": f"new-{who}", "role": "regional_manager", "regions": ["eu-fr"]})
    assert r.status_code == (201 if admin_like else 403), r.text
    if admin_like:
        assert r.json()["principal"]["regions"] == ["EU-FR"]
        new_key = r.json()["api_key"]
        assert call(client, new_key, "GET", "/v1/admin/me").json()["regions"] == ["EU-FR"]
    r = call(client, key, "POST", f"/v1/admin/principals/{viewer_id}/keys", {"name": "rotated"})
    assert r.status_code == (201 if admin_like else 403)
    prefix = world.keys["viewer"].split("_")[1]
    r = call(client, key, "DELETE", f"/v1/admin/principals/{viewer_id}/keys/{prefix}")
    assert r.status_code == (204 if admin_like else 403)
    assert call(client, world.keys["viewer"], "GET", "/v1/admin/me").status_code == (
        401 if admin_like else 200)


def test_only_owners_create_or_key_owners_and_admins(client: TestClient, world: World) -> None:
    admin, owner = world.keys["admin"], world.keys["owner"]
    assert call(client, admin, "POST", "/v1/admin/principals",
                {"name": "a2", "role": "admin"}).status_code == 403
    assert call(client, admin, "POST", f"/v1/admin/principals/{world.principal_ids['owner']}"
                "/keys", {}).status_code == 403
    assert call(client, owner, "POST", "/v1/admin/principals",
                {"name": "a2", "role": "admin"}).status_code == 201
    assert call(client, owner, "POST", "/v1/admin/principals",
                {"name": "a2", "role": "viewer"}).status_code == 409
    assert call(client, owner, "POST", "/v1/admin/principals",
                {"name": "m", "role": "regional_manager"}).status_code == 422  # no region


def test_authentication(client: TestClient, world: World) -> None:
    assert client.get("/v1/admin/rules").status_code == 401
    r = call(client, world.tenant_key, "GET", "/v1/admin/rules")
    assert r.status_code == 401 and "principal key" in r.json()["detail"]
    assert call(client, "rsnp_abc_def", "GET", "/v1/admin/rules").status_code == 401
    forged = world.keys["owner"][:-4] + "0000"
    assert call(client, forged, "GET", "/v1/admin/rules").status_code == 401


def test_tenants_are_isolated(client: TestClient, world: World) -> None:
    other = make_world()
    key, rule_id = other.keys["owner"], world.rules["us"]
    for method, suffix in (("GET", ""), ("PATCH", ""), ("POST", "/disable"), ("DELETE", "")):
        body = {"enabled": False} if method == "PATCH" else None
        assert call(client, key, method, f"/v1/admin/rules/{rule_id}{suffix}", body
                    ).status_code == 404
    assert rule_id not in {r["id"] for r in call(client, key, "GET", "/v1/admin/rules").json()}
    pid = world.principal_ids["viewer"]
    assert call(client, key, "POST", f"/v1/admin/principals/{pid}/keys", {}).status_code == 404
    assert all(e["resource_id"] not in {str(i) for i in world.rules.values()}
               for e in call(client, key, "GET", "/v1/admin/audit").json()["entries"])


def test_audit_records_who_what_before_after_when_and_scope(client: TestClient,
                                                            world: World) -> None:
    # given an EU manager changing, disabling and deleting the EU-DE rule
    key, rid = world.keys["eu"], world.rules["eu"]
    call(client, key, "PATCH", f"/v1/admin/rules/{rid}", {"channels": ["sms"], "urgency":
                                                          "informational"})
    call(client, key, "POST", f"/v1/admin/rules/{rid}/disable")
    call(client, key, "DELETE", f"/v1/admin/rules/{rid}")
    # when the owner reads that rule's history
    page = call(client, world.keys["owner"], "GET", "/v1/admin/audit",
                params={"resource": "rules", "resource_id": str(rid)}).json()
    # then every change is there, newest first, with before and after
    entries = page["entries"]
    assert [e["action"] for e in entries] == ["rule.delete", "rule.disable", "rule.update",
                                              "rule.create"]
    update = entries[2]
    assert update["actor"] == "eu" and update["principal_id"] == world.principal_ids["eu"]
    assert (update["region"], update["category"]) == ("EU-DE", None)
    assert update["before"]["channels"] == ["email"] and update["before"]["urgency"] is None
    assert update["after"]["channels"] == ["sms"] and update["after"]["urgency"] == "informational"
    assert entries[1]["before"]["enabled"] and not entries[1]["after"]["enabled"]
    assert entries[0]["after"] is None and entries[0]["before"]["version"] == 3
    assert entries[3]["actor"] == "cli:test" and entries[3]["principal_id"] is None
    assert entries[0]["at"] >= entries[3]["at"]
    # and pages follow the cursor
    first = call(client, world.keys["owner"], "GET", "/v1/admin/audit", params={"limit": 2}).json()
    rest = call(client, world.keys["owner"], "GET", "/v1/admin/audit",
                params={"limit": 500, "before_id": first["next_before_id"]}).json()
    ids = [e["id"] for e in first["entries"] + rest["entries"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    assert rest["next_before_id"] is None


def test_key_issue_and_revoke_are_audited_without_the_key(client: TestClient,
                                                          world: World) -> None:
    pid = world.principal_ids["viewer"]
    new = call(client, world.keys["owner"], "POST", f"/v1/admin/principals/{pid}/keys",
               {"name": "ci"}).json()
    entries = call(client, world.keys["owner"], "GET", "/v1/admin/audit",
                   params={"resource": "principals"}).json()["entries"]
    assert entries[0]["action"] == "principal.key_issue"
    assert entries[0]["after"]["key_prefix"] == new["key_prefix"]
    assert new["api_key"] not in str(entries)
    with session_scope() as s:
        stored = s.execute(text("SELECT key_hash FROM principal_api_keys WHERE key_prefix = :p"),
                           {"p": new["key_prefix"]}).scalar_one()
    assert new["api_key"] not in stored and len(stored) == 64


def test_conflicts_and_validation(client: TestClient, world: World) -> None:
    owner, rid = world.keys["owner"], world.rules["us"]
    dup = call(client, owner, "POST", "/v1/admin/rules",
               {"milestone": "label_created", "region": "us", "channels": ["email"]})
    assert dup.status_code == 409 and str(rid) in dup.json()["detail"]
    stale = call(client, owner, "PATCH", f"/v1/admin/rules/{rid}",
                 {"enabled": False, "expected_version": 7})
    assert stale.status_code == 409
    ok = call(client, owner, "PATCH", f"/v1/admin/rules/{rid}",
              {"enabled": False, "expected_version": 1})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    for body in ({"milestone": "label_created", "region": "E U", "channels": ["sms"]},
                 {"milestone": "label_created", "channels": ["fax"]},
                 {"milestone": "label_created", "channels": []},
                 {"milestone": "nope", "channels": ["sms"]},
                 {"milestone": "label_created", "channels": ["sms"], "template": "A B"},
                 {"milestone": "label_created", "channels": ["sms"], "extra": 1}):
        assert call(client, owner, "POST", "/v1/admin/rules", body).status_code == 422, body
    for patch in ({"channels": []}, {"channels": None}, {"enabled": None}, {"region": "US"}):
        assert call(client, owner, "PATCH", f"/v1/admin/rules/{rid}", patch
                    ).status_code == 422, patch
    assert call(client, owner, "GET", "/v1/admin/rules/999999999").status_code == 404


def test_override_opt_out_only_on_transactional_rules(client: TestClient, world: World) -> None:
    # given an EU manager and a transactional milestone in its region
    key = world.keys["eu"]
    r = call(client, key, "POST", "/v1/admin/rules", {
        "milestone": "refund_processed", "region": "EU", "channels": ["email"],
        "override_opt_out": True})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    row = rule_row(rid)
    assert r.json()["override_opt_out"] is True and row is not None and row["override_opt_out"]
    ex = call(client, key, "GET", "/v1/admin/rules/explain",
              params={"milestone": "refund_processed", "region": "EU-DE"}).json()
    assert ex["result"]["override_opt_out"] is True and ex["result"]["rule_id"] == rid
    assert ex["candidates"][0]["rule"]["override_opt_out"] is True
    # when a rule is not transactional: 422 with the reason, nothing stored
    r = call(client, key, "POST", "/v1/admin/rules", {
        "milestone": "in_transit", "region": "EU", "channels": ["sms"], "override_opt_out": True})
    assert r.status_code == 422 and "in_transit is informational by default" in r.json()["detail"]
    r = call(client, key, "PATCH", f"/v1/admin/rules/{rid}", {"urgency": "informational"})
    assert r.status_code == 422 and "only for transactional rules" in r.json()["detail"]
    # then switching it off and making the rule informational works, audited
    r = call(client, key, "PATCH", f"/v1/admin/rules/{rid}",
             {"override_opt_out": False, "urgency": "informational"})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    assert (r.json()["override_opt_out"], r.json()["urgency"]) == (False, "informational")
    assert audit_actions(rid) == ["rule.create", "rule.update"]
    assert call(client, key, "PATCH", f"/v1/admin/rules/{rid}",
                {"override_opt_out": None}).status_code == 422
    # and the US manager may not flip the EU rule's flag (403), nor read it
    assert call(client, world.keys["us"], "PATCH", f"/v1/admin/rules/{rid}",
                {"override_opt_out": True, "urgency": "transactional"}).status_code == 403
