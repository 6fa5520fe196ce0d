"""Retailer control: ``rules``, ``principals`` and ``audit`` (every command with ``--json``).

``register(app)`` adds the three groups. The command line holds the database credentials,
so it acts as the tenant's owner; its changes are audited as ``audit_actor()`` names it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from return_notify.cli.common import (
    CREATE_TENANT_HINT,
    JsonOpt,
    audit_actor,
    console,
    fail,
    print_json,
    require_database,
    tenant_id,
)

if TYPE_CHECKING:
    from return_notify.access.principals import Principal

rules_app = typer.Typer(help="Notification rules per tenant, region and product category.",
                        no_args_is_help=True)
principals_app = typer.Typer(help="Principals (people, systems) who administer a tenant.",
                             no_args_is_help=True)
audit_app = typer.Typer(help="Audit log of every change.", no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant slug.")]
RegionOpt = Annotated[str | None, typer.Option(help="Region, e.g. EU (covers EU-DE); '*' = any.")]
CategoryOpt = Annotated[str | None, typer.Option(help="Product category; '*' = any.")]
_OVERRIDE_HELP = ("Send even on channels the customer opted out of (transactional rules only; "
                  "never beats SMS STOP or an email unsubscribe).")


def register(app: typer.Typer) -> None:
    """Add ``rules``, ``principals`` and ``audit`` to the ``return-notify`` app."""
    app.add_typer(rules_app, name="rules")
    app.add_typer(principals_app, name="principals")
    app.add_typer(audit_app, name="audit")


def _tenant(s: Any, slug: str) -> Principal:
    """Tenant ``slug``'s owner as the command line acts (fails if the tenant does not exist):
    the operator's principal, named as ``audit_actor()`` names the operator."""
    from return_notify.access.principals import OWNER, Principal

    actor = audit_actor()
    return Principal(actor.id, tenant_id(s, slug, CREATE_TENANT_HINT), slug, actor.name, OWNER)


def _session() -> Any:
    from return_notify.storage.db import session_scope

    require_database()
    return session_scope()


def _channels(value: str) -> list[str]:
    return [c for c in value.replace(" ", "").split(",") if c]


def _rules_table(rows: list[dict[str, Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("id", "milestone", "region", "category", "channels", "template", "urgency",
                 "enabled", "overrides opt-out", "v"):
        table.add_column(name, overflow="fold", no_wrap=name == "milestone")
    for r in rows:
        table.add_row(str(r["id"]), r["milestone"], r["region"] or "*", r["category"] or "*",
                      ",".join(r["channels"]), r["template"] or "-", r["urgency"] or "default",
                      "yes" if r["enabled"] else "[red]no[/]",
                      "[bold]yes[/]" if r["override_opt_out"] else "no", str(r["version"]))
    console.print(table)


def _show(rows: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        print_json(rows[0] if len(rows) == 1 else rows)
    else:
        _rules_table(rows)


@rules_app.command("list")
def rules_list(tenant: TenantOpt, milestone: Annotated[str | None, typer.Option()] = None,
               region: RegionOpt = None, category: CategoryOpt = None,
               json_out: JsonOpt = False) -> None:
    """List a tenant's rules (region/category filters are exact; '*' = rules for any)."""
    from return_notify.core.regions import normalize_category, normalize_region
    from return_notify.rules.store import list_rules, rule_dict

    try:
        reg, cat = normalize_region(region), normalize_category(category)
    except ValueError as exc:
        fail(str(exc))
    with _session() as s:
        op = _tenant(s, tenant)
        rows = [rule_dict(r) for r in list_rules(s, op.tenant_id, milestone)
                if (region is None or r.region == reg)
                and (category is None or r.product_category == cat)]
    if json_out:
        print_json(rows)
    else:
        _rules_table(rows)


@rules_app.command("create")
def rules_create(
    tenant: TenantOpt,
    milestone: Annotated[str, typer.Option(help="e.g. label_created")],
    channels: Annotated[str, typer.Option(help="Comma-separated: email,sms,inapp")],
    region: RegionOpt = None, category: CategoryOpt = None,
    template: Annotated[str | None, typer.Option(help="Template name or variant.")] = None,
    urgency: Annotated[str | None, typer.Option(help="transactional or informational "
                                                "(default: the milestone's).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled (mute).")]
    = False,
    override_opt_out: Annotated[bool, typer.Option("--override-opt-out/--no-override-opt-out",
                                                   help=_OVERRIDE_HELP)] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a rule for a (region, category, milestone) scope of a tenant."""
    from return_notify.rules.store import RuleConflict, RuleSpec, create_rule, rule_dict

    try:
        spec = RuleSpec.build(milestone, _channels(channels), region, category, template,
                              urgency, not disabled, override_opt_out)
    except ValueError as exc:
        fail(str(exc))
    try:
        with _session() as s:
            op = _tenant(s, tenant)
            row = rule_dict(create_rule(s, op.tenant_id, spec, op.actor))
    except RuleConflict as exc:
        fail(str(exc))
    _show([row], json_out)


def _change(tenant: str, rule_id: int, changes: dict[str, Any], json_out: bool,
            expected_version: int | None = None, disable: bool = False) -> None:
    from return_notify.rules.store import RuleError, disable_rule, rule_dict, update_rule

    try:
        with _session() as s:
            op = _tenant(s, tenant)
            if disable:
                row = disable_rule(s, op.tenant_id, rule_id, op.actor)
            else:
                row = update_rule(s, op.tenant_id, rule_id, changes, op.actor,
                                  expected_version=expected_version)
            out = rule_dict(row)
    except (RuleError, ValueError) as exc:
        fail(str(exc))
    _show([out], json_out)


@rules_app.command("update")
def rules_update(
    rule_id: Annotated[int, typer.Argument(help="Rule id.")], tenant: TenantOpt,
    channels: Annotated[str | None, typer.Option(help="Comma-separated: email,sms,inapp")]
    = None,
    template: Annotated[str | None, typer.Option(help="Template name ('' = default).")] = None,
    urgency: Annotated[str | None, typer.Option(help="transactional, informational or "
                                                "'default'.")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable",
                                                 help="Enable or disable (mute).")] = None,
    override_opt_out: Annotated[bool | None, typer.Option(
        "--override-opt-out/--no-override-opt-out", help=_OVERRIDE_HELP)] = None,
    expected_version: Annotated[int | None, typer.Option(help="Fail if the rule's version "
                                                         "differs.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a rule's channels, template, urgency, enabled or override flag (its scope is
    fixed)."""
    changes: dict[str, Any] = {}
    if channels is not None:
        changes["channels"] = _channels(channels)
    if template is not None:
        changes["template"] = template or None
    if urgency is not None:
        changes["urgency"] = None if urgency in ("", "default") else urgency
    if enabled is not None:
        changes["enabled"] = enabled
    if override_opt_out is not None:
        changes["override_opt_out"] = override_opt_out
    if not changes:
        fail("nothing to change: give --channels, --template, --urgency, --enable/--disable "
             "or --override-opt-out/--no-override-opt-out")
    _change(tenant, rule_id, changes, json_out, expected_version)


@rules_app.command("disable")
def rules_disable(rule_id: Annotated[int, typer.Argument(help="Rule id.")], tenant: TenantOpt,
                  json_out: JsonOpt = False) -> None:
    """Disable a rule: events in its scope are then notified on no channel."""
    _change(tenant, rule_id, {}, json_out, disable=True)


@rules_app.command("delete")
def rules_delete(rule_id: Annotated[int, typer.Argument(help="Rule id.")], tenant: TenantOpt,
                 json_out: JsonOpt = False) -> None:
    """Delete a rule: its scope falls back to less specific rules or the default."""
    from return_notify.rules.store import RuleError, delete_rule

    try:
        with _session() as s:
            op = _tenant(s, tenant)
            gone = delete_rule(s, op.tenant_id, rule_id, op.actor)
    except RuleError as exc:
        fail(str(exc))
    if json_out:
        print_json({"deleted": gone})
    else:
        console.print(f"deleted rule {rule_id}")


@rules_app.command("explain")
def rules_explain(
    tenant: TenantOpt, milestone: Annotated[str, typer.Option(help="e.g. in_transit")],
    region: Annotated[str | None, typer.Option(help="The event's region.")] = None,
    category: Annotated[str | None, typer.Option(help="The event's product category.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Which rule applies to such an event, and why every candidate won or lost."""
    from dataclasses import asdict

    from return_notify.events import Milestone
    from return_notify.rules.resolver import explain

    if milestone not in {m.value for m in Milestone}:
        fail(f"unknown milestone {milestone!r}")
    with _session() as s:
        op = _tenant(s, tenant)
        ex = explain(s, op.tenant_id, region, category, milestone)
    data = asdict(ex)
    data["milestone"] = ex.milestone.value
    for c in data["candidates"]:
        if c["rule"] is not None:
            c["rule"]["milestone"] = ex.milestone.value
    if json_out:
        print_json(data)
        return
    r = ex.result
    console.print(f"[bold]{ex.milestone.value}[/] region {ex.region or '(none)'} category "
                  f"{ex.category or '(none)'} → channels [bold]{','.join(r.channels) or 'NONE'}"
                  f"[/], urgency {r.urgency}, template {r.template or '(default)'}, "
                  f"overrides opt-outs: {'yes' if r.override_opt_out else 'no'}")
    console.print(f"because: {r.reason}")
    for c in ex.candidates:
        rule = c.rule
        what = "config default" if rule is None else (
            f"rule {rule.id} ({rule.scope_label}) → {','.join(rule.channels)}"
            + ("" if rule.enabled else " [disabled]")
            + (" [overrides opt-outs]" if rule.override_opt_out else ""))
        console.print(f"  {c.outcome:<15} {what}", markup=False, soft_wrap=True)
        console.print(f"  {'':<15} {c.why}", markup=False, soft_wrap=True)


@principals_app.command("create")
def principals_create(
    tenant: TenantOpt, name: Annotated[str, typer.Option(help="Unique in the tenant.")],
    role: Annotated[str, typer.Option(help="owner, admin, regional_manager, category_manager "
                                      "or viewer")],
    region: Annotated[list[str] | None, typer.Option(help="Region scope (repeat).")] = None,
    category: Annotated[list[str] | None, typer.Option(help="Category scope (repeat).")] = None,
    key_name: Annotated[str | None, typer.Option(help="Label for the key.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a principal and its first API key (printed once, stored hashed)."""
    from return_notify.access.principals import PrincipalError, create_principal

    try:
        with _session() as s:
            op = _tenant(s, tenant)
            created, key = create_principal(s, op, name, role, region or [], category or [],
                                            key_name)
    except PrincipalError as exc:
        fail(str(exc))
    if json_out:
        print_json({"principal": created, "api_key": key})
        return
    console.print(f"principal [bold]{name}[/] ({role}, id {created['id']})")
    console.print(f"API key (shown once, store it now): [bold]{key}[/]", soft_wrap=True)


@principals_app.command("list")
def principals_list(tenant: TenantOpt, json_out: JsonOpt = False) -> None:
    """List a tenant's principals with their active key prefixes (never the keys)."""
    from return_notify.access.principals import list_principals

    with _session() as s:
        rows = list_principals(s, _tenant(s, tenant).tenant_id)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "name", "role", "regions", "categories", "key prefixes", "created")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["role"], ",".join(r["regions"]),
                      ",".join(r["categories"]), ",".join(r["key_prefixes"]),
                      str(r["created_at"])[:19])
    console.print(table)


@principals_app.command("revoke-key")
def principals_revoke_key(tenant: TenantOpt,
                          principal_id: Annotated[int, typer.Argument(help="Principal id.")],
                          prefix: Annotated[str, typer.Argument(help="Key prefix.")]) -> None:
    """Revoke a principal's API key (401 with it from then on)."""
    from return_notify.access.principals import get_principal, revoke_key

    with _session() as s:
        op = _tenant(s, tenant)
        target = get_principal(s, op.tenant_id, principal_id)
        ok = target is not None and revoke_key(s, op, target, prefix)
    if not ok:
        fail(f"no active key {prefix!r} for principal {principal_id}")
    console.print(f"revoked key {prefix}")


def _diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """``key: old → new`` for what changed (everything for a creation or a deletion)."""
    if before is None or after is None:
        return ("created: " if before is None else "deleted: ") + json.dumps(
            after if before is None else before, default=str)
    changed = [f"{k}: {json.dumps(before.get(k), default=str)} → "
               f"{json.dumps(after.get(k), default=str)}"
               for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return "; ".join(changed) or "(no change)"


@audit_app.command("list")
def audit_list(
    tenant: TenantOpt,
    resource: Annotated[str | None, typer.Option(help="rules, principals, …")] = None,
    resource_id: Annotated[str | None, typer.Option(help="e.g. a rule id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    before_id: Annotated[int | None, typer.Option(help="Older than this entry.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The audit log, newest first: who changed what, before and after, when, in which scope."""
    from return_notify.access.audit import list_entries

    with _session() as s:
        entries, cursor = list_entries(s, _tenant(s, tenant).tenant_id, resource=resource,
                                       resource_id=resource_id, before_id=before_id,
                                       limit=limit)
    if json_out:
        print_json({"entries": entries, "next_before_id": cursor})
        return
    for e in entries:
        console.print(f"[bold]#{e['id']}[/] {str(e['at'])[:19]}  {e['actor']}  [bold]{e['action']}"
                      f"[/]  {e['resource']} {e['resource_id'] or ''}  (region "
                      f"{e['region'] or '*'}, category {e['category'] or '*'})", soft_wrap=True)
        console.print(f"    {_diff(e['before'], e['after'])}", soft_wrap=True, markup=False)
    if cursor:
        console.print(f"older entries: --before-id {cursor}")
