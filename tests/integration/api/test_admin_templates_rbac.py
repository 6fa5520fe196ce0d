"""Admin API for templates and branding with scoped principals: every endpoint, both directions.

Each test gets a fresh tenant with seven principals (owner, admin, regional managers for
EU and US, category managers for electronics and apparel, a viewer) and five active SMS
overrides of ``refund_processed`` (one version each), scoped ``us`` (region US), ``eu``
(region EU), ``elec`` (category electronics), ``app`` (category apparel) and ``any``
(tenant-wide). A denied call is 403 with the reason and changes nothing; an allowed change
is stored and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from return_notify.access.principals import operator
from return_notify.policy.verified_recipients import add_verified
from return_notify.storage.db import session_scope
from return_notify.templating.scope import TemplateScope
from return_notify.templating.store import forget_tenant_templates
from return_notify.templating.validation import OverrideKey
from return_notify.templating.versions import save_override
from tests.integration.api_helpers import PRINCIPALS, ApiEnv, call, make_principals, make_tenant

pytestmark = pytest.mark.integration

TEMPLATES = {"us": TemplateScope("US"), "eu": TemplateScope("EU"),
             "elec": TemplateScope(None, "electronics"), "app": TemplateScope(None, "apparel"),
             "any": TemplateScope()}
KEY = OverrideKey("sms", "refund_processed", "text", "en")
KEY_JSON = {"channel": "sms", "milestone": "refund_processed", "part": "text", "locale": "en"}
EVERYONE = set(TEMPLATES)
TEST_PHONE = "+14155550123"


def source(name: str, n: int = 1) -> str:
    return f"{name.upper()}-TEXT v{n} {{{{ return_id }}}} {{{{ cta_url }}}}"


@dataclass
class World:
    tenant_id: int
    slug: str
    tenant_key: str
    keys: dict[str, str]
    principal_ids: dict[str, int]
    templates: dict[str, int]  # name -> override id of version 1


def make_world() -> World:
    tid, slug, tenant_key = make_tenant()
    keys, pids = make_principals(tid, slug)
    templates = {}
    with session_scope() as s:
        op = operator(tid, slug, "test")
        for name, scope in TEMPLATES.items():
            version, _ = save_override(s, tid, KEY, source(name), op.actor, scope=scope)
            templates[name] = version.id
        add_verified(s, tid, "sms", TEST_PHONE, "test")  # test sends go to it only
    forget_tenant_templates()
    return World(tid, slug, tenant_key, keys, pids, templates)


@pytest.fixture
def world(api_env: ApiEnv) -> World:
    return make_world()


def scope_json(name: str) -> dict[str, Any]:
    s = TEMPLATES[name]
    return {"region": s.region, "category": s.category}


def versions(tenant_id: int, name: str) -> list[tuple[int, bool]]:
    s_ = TEMPLATES[name]
    with session_scope() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT version, active FROM template_overrides WHERE tenant_id = :t "
            "AND region IS NOT DISTINCT FROM :r AND product_category IS NOT DISTINCT FROM :c "
            "ORDER BY version"), {"t": tenant_id, "r": s_.region, "c": s_.category}).all()]


def audit(tenant_id: int, resource: str = "templates") -> list[dict[str, Any]]:
    with session_scope() as s:
        return [dict(r) for r in s.execute(text(
            "SELECT action, actor, principal_id, resource_id, region, product_category, before, "
            "after FROM audit_log WHERE tenant_id = :t AND resource = :res ORDER BY id"),
            {"t": tenant_id, "res": resource}).mappings()]


def sandbox_body(provider_message_id: str) -> str:
    with session_scope() as s:
        return str(s.execute(text("SELECT body FROM sandbox_messages WHERE "
                                  "provider_message_id = :p"),
                             {"p": provider_message_id}).scalar_one())


# endpoint: (method, path, verb, success status, request builder(template name) -> (body, params))
ENDPOINTS: dict[str, tuple[str, str, str, int, Any]] = {
    "history": ("GET", "/v1/admin/templates/history", "read", 200,
                lambda n: (None, {**KEY_JSON, **{k: v for k, v in scope_json(n).items() if v}})),
    "validate": ("POST", "/v1/admin/templates/validate", "read", 200,
                 lambda n: ({**KEY_JSON, **scope_json(n), "source": source(n, 2)}, None)),
    "preview": ("POST", "/v1/admin/templates/preview", "read", 200,
                lambda n: ({"channel": "sms", "milestone": "refund_processed",
                            **scope_json(n)}, None)),
    "create": ("POST", "/v1/admin/templates", "write", 201,
               lambda n: ({**KEY_JSON, **scope_json(n), "source": source(n, 2)}, None)),
    "rollback": ("POST", "/v1/admin/templates/rollback", "write", 200,
                 lambda n: ({**KEY_JSON, **scope_json(n), "version": 0}, None)),
    "test-send": ("POST", "/v1/admin/templates/test-send", "send", 202,
                  lambda n: ({"channel": "sms", "milestone": "refund_processed",
                              "to": TEST_PHONE, **scope_json(n)}, None)),
}

# (principal, template, may read, may write/send): both directions for regions and categories
PAIRS = [
    ("eu", "us", False, False), ("us", "eu", False, False),
    ("elec", "app", False, False), ("app", "elec", False, False),
    ("eu", "eu", True, True), ("us", "us", True, True),
    ("elec", "elec", True, True), ("app", "app", True, True),
    ("eu", "elec", True, False),  # region-ANY template: applies in EU (readable), not EU's alone
    ("elec", "us", True, False),  # category-ANY template: applies to electronics, not theirs
    ("eu", "any", True, False), ("app", "any", True, False),  # tenant-wide: owners/admins
    ("viewer", "us", True, False), ("viewer", "app", True, False),
    ("owner", "us", True, True), ("admin", "app", True, True), ("owner", "any", True, True),
]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(("who", "name", "may_read", "may_write"), PAIRS)
def test_template_endpoints_both_directions(client: TestClient, world: World, endpoint: str,
                                            who: str, name: str, may_read: bool,
                                            may_write: bool) -> None:
    # given
    method, path, verb, ok, build = ENDPOINTS[endpoint]
    body, params = build(name)
    allowed = may_read if verb == "read" else may_write
    # when
    r = call(client, world.keys[who], method, path, body, params)
    # then
    assert r.status_code == (ok if allowed else 403), r.text
    stored = versions(world.tenant_id, name)
    entries = audit(world.tenant_id)
    if not allowed:
        assert "may not" in r.json()["detail"]
        assert stored == [(1, True)]
        assert [e["action"] for e in entries] == ["template.create"] * len(TEMPLATES)
        return
    marker = f"{name.upper()}-TEXT v1"
    if endpoint == "history":
        assert [(h["version"], h["region"], h["category"]) for h in r.json()] == [
            (1, TEMPLATES[name].region, TEMPLATES[name].category)]
    elif endpoint == "validate":
        assert r.json()["ok"] is True
    elif endpoint == "preview":
        assert r.json()["text"].startswith(marker), r.json()
    elif endpoint == "test-send":
        assert sandbox_body(r.json()["provider_message_id"]).startswith(f"[TEST] {marker}")
        assert entries[-1]["action"] == "template.test_send" and entries[-1]["actor"] == who
        assert entries[-1]["after"]["to"] == "+1******0123"
    elif endpoint == "create":
        assert r.json()["version"] == 2 and r.json()["created_by"] == who
        assert stored == [(1, False), (2, True)]
        last = entries[-1]
        assert (last["action"], last["actor"], last["principal_id"]) == (
            "template.create", who, world.principal_ids[who])
        assert (last["region"], last["product_category"]) == (TEMPLATES[name].region,
                                                              TEMPLATES[name].category)
        assert last["before"]["version"] == 1 and last["after"]["version"] == 2
        assert last["after"]["source"] == source(name, 2)
    elif endpoint == "rollback":
        assert r.json() == {"active_version": 0} and stored == [(1, False)]
        last = entries[-1]
        assert (last["action"], last["actor"]) == ("template.rollback", who)
        assert last["before"]["version"] == 1 and last["after"]["version"] == 0
    if endpoint in ("history", "validate", "preview"):
        assert stored == [(1, True)] and len(entries) == len(TEMPLATES)


@pytest.mark.parametrize(("who", "scope", "allowed"), [
    ("eu", {"region": "US"}, False), ("eu", {"region": "EU-FR", "variant": "eu_formal"}, True),
    ("us", {"region": "EU-DE"}, False), ("us", {"region": "US-CA"}, True),
    ("elec", {"category": "apparel"}, False), ("elec", {"category": "electronics"}, True),
    ("app", {"category": "electronics", "region": "US"}, False),
    ("app", {"category": "apparel", "region": "US", "variant": "holiday"}, True),
    ("eu", {}, False), ("eu", {"variant": "eu_formal"}, False),  # ANY region: not EU's alone
    ("elec", {"region": "US"}, False), ("viewer", {"region": "US"}, False),
    ("owner", {"variant": "eu_formal"}, True), ("admin", {"region": "JP"}, True),
])
def test_a_new_scope_both_directions(client: TestClient, world: World, who: str,
                                     scope: dict[str, str], allowed: bool) -> None:
    body = {**KEY_JSON, "milestone": "return_approved", "source": source("new"), **scope}
    r = call(client, world.keys[who], "POST", "/v1/admin/templates", body)
    assert r.status_code == (201 if allowed else 403), r.text
    with session_scope() as s:
        n = s.execute(text("SELECT count(*) FROM template_overrides WHERE tenant_id = :t AND "
                           "milestone = 'return_approved'"), {"t": world.tenant_id}).scalar()
    assert n == (1 if allowed else 0)
    if allowed:
        out = r.json()
        assert out["variant"] == scope.get("variant")
        assert out["region"] == (scope["region"].upper() if "region" in scope else None)


@pytest.mark.parametrize(("who", "visible"), [
    ("eu", {"eu", "elec", "app", "any"}), ("us", {"us", "elec", "app", "any"}),
    ("elec", {"us", "eu", "elec", "any"}), ("app", {"us", "eu", "app", "any"}),
    ("viewer", EVERYONE), ("owner", EVERYONE), ("admin", EVERYONE),
])
def test_list_and_audit_show_only_what_the_principal_may_read(
        client: TestClient, world: World, who: str, visible: set[str]) -> None:
    names = {v: k for k, v in world.templates.items()}
    listed = call(client, world.keys[who], "GET", "/v1/admin/templates")
    assert listed.status_code == 200
    assert {names[t["id"]] for t in listed.json()} == visible
    every = call(client, world.keys[who], "GET", "/v1/admin/templates", params={"all": "true"})
    assert {names[t["id"]] for t in every.json()} == visible
    entries = call(client, world.keys[who], "GET", "/v1/admin/audit",
                   params={"resource": "templates"}).json()["entries"]
    assert {names[int(e["resource_id"])] for e in entries} == visible


def test_list_filters(client: TestClient, world: World) -> None:
    key = world.keys["owner"]
    call(client, key, "POST", "/v1/admin/templates",
         {**KEY_JSON, "region": "EU", "variant": "eu_formal", "source": source("formal")})

    def listed(**params: str) -> list[tuple[str | None, str | None, str | None]]:
        r = call(client, key, "GET", "/v1/admin/templates", params=params)
        assert r.status_code == 200, r.text
        return sorted(((t["region"] or ""), (t["category"] or ""), (t["variant"] or ""))
                      for t in r.json())

    assert listed(region="eu") == [("EU", "", ""), ("EU", "", "eu_formal")]
    assert listed(region="eu", variant="default") == [("EU", "", "")]
    assert listed(variant="eu_formal") == [("EU", "", "eu_formal")]
    assert listed(region="*", category="*") == [("", "", "")]
    assert listed(category="apparel") == [("", "apparel", "")]
    assert call(client, key, "GET", "/v1/admin/templates",
                params={"region": "E U"}).status_code == 422


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_branding_read_by_all_written_by_owners_and_admins(client: TestClient, world: World,
                                                           who: str) -> None:
    key, admin_like = world.keys[who], who in ("owner", "admin")
    assert call(client, key, "GET", "/v1/admin/branding").status_code == 200
    r = call(client, key, "PUT", "/v1/admin/branding",
             {"display_name": f"Shop by {who}", "tone": "formal"})
    assert r.status_code == (200 if admin_like else 403), r.text
    got = call(client, key, "GET", "/v1/admin/branding").json()
    entries = audit(world.tenant_id, "branding")
    if admin_like:
        assert got["display_name"] == f"Shop by {who}" and got["updated_by"] == who
        assert [(e["action"], e["actor"]) for e in entries] == [("branding.update", who)]
        assert entries[0]["before"]["display_name"] is None
        assert entries[0]["after"]["display_name"] == f"Shop by {who}"
        # every principal sees the tenant-wide branding change in the audit log
        seen = call(client, world.keys["viewer"], "GET", "/v1/admin/audit",
                    params={"resource": "branding"}).json()["entries"]
        assert [e["action"] for e in seen] == ["branding.update"]
    else:
        assert "may not" in r.json()["detail"] and got["display_name"] is None
        assert entries == []


ALL_ROUTES = [("GET", "/v1/admin/branding", None, None),
              ("PUT", "/v1/admin/branding", {"display_name": "X"}, None),
              ("GET", "/v1/admin/templates", None, None)] + [
    (method, path, *build("us")) for method, path, _, _, build in ENDPOINTS.values()]


@pytest.mark.parametrize(("method", "path", "body", "params"), ALL_ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ALL_ROUTES])
def test_tenant_ingest_key_and_no_key_are_401(client: TestClient, world: World, method: str,
                                              path: str, body: Any, params: Any) -> None:
    r = call(client, world.tenant_key, method, path, body, params)
    assert r.status_code == 401 and "principal key" in r.json()["detail"]
    assert client.request(method, path, json=body, params=params).status_code == 401
    assert call(client, "rsnp_abc_def", method, path, body, params).status_code == 401
    assert versions(world.tenant_id, "us") == [(1, True)]


def test_tenants_are_isolated(client: TestClient, world: World) -> None:
    other = make_world()
    key = other.keys["owner"]
    mine = set(world.templates.values())
    assert not mine & {t["id"] for t in call(client, key, "GET", "/v1/admin/templates",
                                             params={"all": "true"}).json()}
    hist = call(client, key, "GET", "/v1/admin/templates/history",
                params={**KEY_JSON, "region": "US"}).json()
    assert [h["id"] for h in hist] == [other.templates["us"]]
    preview = call(client, key, "POST", "/v1/admin/templates/preview",
                   {"channel": "sms", "milestone": "refund_processed", "region": "US"}).json()
    assert preview["text"].startswith("US-TEXT v1")  # its own US template, not ours
    call(client, key, "POST", "/v1/admin/templates/rollback",
         {**KEY_JSON, "region": "US", "version": 0})
    assert versions(world.tenant_id, "us") == [(1, True)]


def test_bad_scope_and_variant_are_422(client: TestClient, world: World) -> None:
    key = world.keys["owner"]
    for extra in ({"region": "E U"}, {"variant": "Not Valid"}, {"category": "a\x01b"}):
        r = call(client, key, "POST", "/v1/admin/templates",
                 {**KEY_JSON, "source": source("x"), **extra})
        assert r.status_code == 422, (extra, r.text)
    r = call(client, key, "GET", "/v1/admin/templates/history",
             params={**KEY_JSON, "variant": "Not Valid"})
    assert r.status_code == 422 and "variant" in r.text
    r = call(client, key, "POST", "/v1/admin/templates/rollback",
             {**KEY_JSON, "region": "EU", "variant": "eu_formal", "version": 1})
    assert r.status_code == 404 and "eu_formal" in r.text
