"""``templates preview|set|list|history|rollback|test-send|branding``: packaged and tenant templates.

``register(app)`` adds the group; everything heavy is imported inside the commands. Overrides
are validated before they are stored (exit 2, one line per problem). ``--region``/``--category``
/``--variant`` select an override's scope and variant (omitted: ANY / the default; see
``template_scope``). Changes are audited as ``audit_actor()`` names the operator.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from return_notify.cli.common import (
    JsonOpt,
    audit_actor,
    console,
    err_console,
    fail,
    print_json,
    require_database,
    tenant_id,
)

templates_app = typer.Typer(help="Notification templates.", no_args_is_help=True)
_NO_DATABASE = "RSN_DATABASE_URL is not set: tenant templates live in PostgreSQL."

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant slug.")]
ChannelOpt = Annotated[str, typer.Option(help="email, sms or inapp.")]
MilestoneOpt = Annotated[str, typer.Option(help="e.g. refund_processed, or * for every milestone.")]
PartOpt = Annotated[str, typer.Option(help="email: subject, text, html; sms: text; inapp: title, text.")]
LocaleOpt = Annotated[str, typer.Option(help="Locale the override is for: en, de, de-AT, ...")]
RegionOpt = Annotated[str | None, typer.Option(
    help="Region the override is for, e.g. EU (covers EU-DE); omitted or * = ANY.")]
CategoryOpt = Annotated[str | None, typer.Option(
    help="Product category the override is for, e.g. apparel; omitted or * = ANY.")]
VariantOpt = Annotated[str | None, typer.Option(
    help="Template variant a rule names, e.g. eu_formal; omitted or 'default' = the default.")]


def register(app: typer.Typer) -> None:
    """Add the ``templates`` group to the ``return-notify`` app."""
    app.add_typer(templates_app, name="templates")


def _key(channel: str, milestone: str, part: str, locale: str) -> Any:
    from return_notify.templating.validation import check_key

    key, problems = check_key(channel, milestone, part, locale)
    if key is None:
        fail(escape("; ".join(problems)), code=2)
    return key


def parse_scope(region: str | None, category: str | None, variant: str | None) -> Any:
    from return_notify.templating.scope import TemplateScope

    try:
        return TemplateScope.parse(region, category, variant)
    except ValueError as exc:
        fail(escape(str(exc)), code=2)


def _label(key: Any, scope: Any) -> str:
    from return_notify.templating.scope import ANY_SCOPE

    return key.label() if scope == ANY_SCOPE else f"{key.label()} ({scope.label()})"


def _problems(problems: list[str], warnings: list[str], json_out: bool) -> NoReturn:
    if json_out:
        print_json({"ok": False, "problems": problems, "warnings": warnings})
    else:
        err_console.print("[bold red]template rejected:[/]")
        for p in problems:
            err_console.print(f"  - {p}", markup=False, highlight=False)
    raise typer.Exit(2)


@templates_app.command("preview")
def templates_preview(
    milestone: Annotated[str, typer.Option(help="e.g. refund_processed.")],
    channel: Annotated[str, typer.Option(help="email, sms or inapp.")] = "email",
    tenant: Annotated[str, typer.Option(
        help="Tenant slug: its branding and overrides are used when RSN_DATABASE_URL is set.")
    ] = "acme-outfitters",
    locale: Annotated[str | None, typer.Option(help="Customer locale, e.g. de-AT.")] = None,
    region: Annotated[str | None, typer.Option(
        help="The sample event's region, e.g. EU-DE (uses EU templates).")] = None,
    category: Annotated[str | None, typer.Option(help="The sample event's product category.")]
    = None,
    variant: Annotated[str | None, typer.Option(
        help="The template variant a rule names, e.g. eu_formal.")] = None,
    html: Annotated[bool, typer.Option(help="Print the HTML part (email).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Render a tenant's message with sample data (packaged templates without a database)."""
    from return_notify.config.settings import get_settings
    from return_notify.events import Milestone
    from return_notify.pipeline.preview import PreviewTenant, preview, resolve_tenant
    from return_notify.templating.render import TemplateRenderError

    try:
        m = Milestone(milestone)
    except ValueError:
        fail(f"unknown milestone {milestone!r}; one of: {', '.join(x.value for x in Milestone)}")
    info = PreviewTenant(tenant)
    if get_settings().database_url:
        from sqlalchemy.exc import SQLAlchemyError

        from return_notify.storage.db import session_scope

        try:
            with session_scope() as s:
                info = scoped_tenant(resolve_tenant(s, tenant), parse_scope(region, category, variant))
            if info.templates is None:
                err_console.print(f"[yellow]note:[/] no tenant {tenant!r} in the database; "
                                  "packaged templates and default branding")
        except SQLAlchemyError as exc:
            err_console.print(f"[yellow]note:[/] tenant {tenant!r} not read from the database "
                              f"({type(exc).__name__}); packaged templates and default branding")
    try:
        r = preview(info, channel, m.value, locale)
    except TemplateRenderError as exc:
        fail(str(exc))
    if json_out:
        print_json({"subject": r.subject, "text": r.text, "html": r.html})
        return
    if r.subject:
        console.print(f"[bold]{escape(r.subject)}[/]\n", highlight=False)
    sys.stdout.write((r.html if html and r.html else r.text) + "\n")


@templates_app.command("set")
def templates_set(
    source: Annotated[str, typer.Argument(help="Template file, or - for stdin.")],
    tenant: TenantOpt, channel: ChannelOpt, milestone: MilestoneOpt, part: PartOpt,
    locale: LocaleOpt = "en", region: RegionOpt = None, category: CategoryOpt = None,
    variant: VariantOpt = None,
    note: Annotated[str | None, typer.Option(help="Why this change (kept with the version).")] = None,
    inactive: Annotated[bool, typer.Option(help="Store without activating it.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; store nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Validate a template and store it as the next version of a tenant override (active)."""
    from return_notify.storage.db import session_scope
    from return_notify.templating.validation import validate_override
    from return_notify.templating.versions import OverrideRejected, save_override

    require_database(_NO_DATABASE)
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    key = _key(channel, milestone, part, locale)
    scope = parse_scope(region, category, variant)
    with session_scope() as s:
        tid = tenant_id(s, tenant)
        if dry_run:
            from return_notify.templating.branding import get_branding

            result = validate_override(key, text, get_branding(s, tid), tenant)
            if not result.ok:
                _problems(result.problems, result.warnings, json_out)
            if json_out:
                print_json(result.as_dict())
            else:
                console.print(f"[green]valid[/] {escape(_label(key, scope))}")
            return
        try:
            version, result = save_override(s, tid, key, text, audit_actor(), note,
                                            not inactive, scope)
        except OverrideRejected as exc:
            _problems(exc.result.problems, exc.result.warnings, json_out)
    if json_out:
        print_json({"ok": True, "warnings": result.warnings, **version.as_dict()})
        return
    state = "active" if version.active else "stored (inactive)"
    console.print(f"{escape(_label(key, scope))} version [bold]{version.version}[/] {state}")
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)


@templates_app.command("list")
def templates_list(
    tenant: TenantOpt,
    all_versions: Annotated[bool, typer.Option("--all", help="Every version, not only active.")] = False,
    region: Annotated[str | None, typer.Option(help="Only this region (exact; * = ANY only).")]
    = None,
    category: Annotated[str | None, typer.Option(
        help="Only this category (exact; * = ANY only).")] = None,
    variant: Annotated[str | None, typer.Option(
        help="Only this variant ('default' = the default only).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A tenant's overrides (active ones, or every version with --all), optionally filtered."""
    from rich.table import Table

    from return_notify.storage.db import session_scope
    from return_notify.templating.scope import listing_filter
    from return_notify.templating.versions import list_overrides

    require_database(_NO_DATABASE)
    try:
        keep = listing_filter(region, category, variant)
    except ValueError as exc:
        fail(escape(str(exc)), code=2)
    with session_scope() as s:
        rows = [r for r in list_overrides(s, tenant_id(s, tenant), include_inactive=all_versions)
                if keep(r)]
    if json_out:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        console.print(f"{escape(tenant)}: no overrides; every message uses the packaged templates",
                      highlight=False)
        return
    table = Table("channel", "milestone", "part", "locale", "region", "category", "variant",
                  "version", "active", "by", "at", "note")
    for r in rows:
        table.add_row(*(escape(v) for v in (
            r.channel, r.milestone, r.part, r.locale, r.region or "*", r.category or "*",
            r.variant or "default", str(r.version), "yes" if r.active else "",
            r.created_by or "", f"{r.created_at:%Y-%m-%d %H:%M}", r.note or "")))
    console.print(table)


@templates_app.command("history")
def templates_history(
    tenant: TenantOpt, channel: ChannelOpt, milestone: MilestoneOpt, part: PartOpt,
    locale: LocaleOpt = "en", region: RegionOpt = None, category: CategoryOpt = None,
    variant: VariantOpt = None,
    show_source: Annotated[bool, typer.Option("--source", help="Print each version's source.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Every version of one override, newest first."""
    from return_notify.storage.db import session_scope
    from return_notify.templating.versions import override_history

    require_database(_NO_DATABASE)
    key = _key(channel, milestone, part, locale)
    scope = parse_scope(region, category, variant)
    with session_scope() as s:
        rows = override_history(s, tenant_id(s, tenant), key, scope)
    if json_out:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        console.print(f"{escape(_label(key, scope))}: no versions")
    for r in rows:
        mark = " [green](active)[/]" if r.active else ""
        console.print(f"[bold]v{r.version}[/]{mark} {r.created_at:%Y-%m-%d %H:%M} "
                      f"{escape(r.created_by or '')} {escape(r.note or '')}", highlight=False)
        if show_source:
            sys.stdout.write((r.source or "") + "\n\n")


@templates_app.command("rollback")
def templates_rollback(
    tenant: TenantOpt, channel: ChannelOpt, milestone: MilestoneOpt, part: PartOpt,
    version: Annotated[int, typer.Option(
        help="Version to make active; 0 = none (a less specific override or the packaged "
             "template applies).")],
    locale: LocaleOpt = "en", region: RegionOpt = None, category: CategoryOpt = None,
    variant: VariantOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make an earlier version active again (re-validated first), or 0 for none."""
    from return_notify.storage.db import session_scope
    from return_notify.templating.versions import OverrideRejected, rollback_override

    require_database(_NO_DATABASE)
    key = _key(channel, milestone, part, locale)
    scope = parse_scope(region, category, variant)
    with session_scope() as s:
        try:
            target = rollback_override(s, tenant_id(s, tenant), key, version, scope,
                                       audit_actor())
        except LookupError as exc:
            fail(escape(str(exc)))
        except OverrideRejected as exc:
            _problems(exc.result.problems, exc.result.warnings, json_out)
    if json_out:
        print_json({"ok": True, "active_version": target.version if target else 0})
    elif target is None:
        console.print(f"{escape(_label(key, scope))}: no active version (the next candidate "
                      "applies)")
    else:
        console.print(f"{escape(_label(key, scope))}: version [bold]{target.version}[/] is active")


@templates_app.command("test-send")
def templates_test_send(
    tenant: TenantOpt,
    milestone: Annotated[str, typer.Option(help="e.g. refund_processed.")],
    to: Annotated[str, typer.Option(help="A verified test recipient (email or E.164).")],
    channel: Annotated[str, typer.Option(help="email or sms.")] = "email",
    locale: Annotated[str | None, typer.Option(help="Customer locale, e.g. de-AT.")] = None,
    region: Annotated[str | None, typer.Option(
        help="The sample event's region, e.g. EU-DE (uses EU templates).")] = None,
    category: Annotated[str | None, typer.Option(help="The sample event's product category.")]
    = None,
    variant: Annotated[str | None, typer.Option(
        help="The template variant a rule names, e.g. eu_formal.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Render the tenant's message with sample data and send it, marked [TEST], to a
    verified test recipient (`return-notify test-recipients add`) through the configured
    provider; never to an address on the suppression list."""
    from return_notify.config.settings import get_settings
    from return_notify.core.masking import mask
    from return_notify.errors import DeliveryError
    from return_notify.events import Milestone
    from return_notify.pipeline.preview import resolve_tenant
    from return_notify.pipeline.test_sends import TestSendRefused, test_send
    from return_notify.storage.db import session_scope
    from return_notify.templating.render import TemplateRenderError

    require_database(_NO_DATABASE)
    if milestone not in {m.value for m in Milestone}:
        fail(f"unknown milestone {milestone!r}")
    scope = parse_scope(region, category, variant)
    with session_scope() as s:
        tenant_id(s, tenant)
        info = scoped_tenant(resolve_tenant(s, tenant), scope)
    try:
        with session_scope() as s:
            result, rendered = test_send(s, info, channel, milestone, to, get_settings(), locale)
    except (TestSendRefused, TemplateRenderError, DeliveryError) as exc:
        fail(escape(f"test send {'refused' if isinstance(exc, TestSendRefused) else 'failed'}: "
                    f"{type(exc).__name__}: {exc}"))
    if json_out:
        print_json({"ok": True, "provider": result.provider, "to": mask(to),
                    "provider_message_id": result.provider_message_id,
                    "subject": rendered.subject})
        return
    console.print(f"sent to {escape(mask(to))} via {result.provider} ({result.provider_message_id})",
                  highlight=False)


def scoped_tenant(info: Any, scope: Any) -> Any:
    """``info`` (a ``PreviewTenant``) as a message of ``scope`` sees its templates."""
    from return_notify.pipeline.preview import PreviewTenant

    if info.templates is None:
        return info
    return PreviewTenant(info.slug, info.name,
                         info.templates.scoped(scope.region, scope.category, scope.variant))


@templates_app.command("branding")
def templates_branding(
    tenant: TenantOpt,
    display_name: Annotated[str | None, typer.Option(help="Name shown in messages.")] = None,
    logo_url: Annotated[str | None, typer.Option(help="https:// logo image.")] = None,
    brand_color: Annotated[str | None, typer.Option(help="#rrggbb header and links.")] = None,
    accent_color: Annotated[str | None, typer.Option(help="#rrggbb button.")] = None,
    support_url: Annotated[str | None, typer.Option()] = None,
    support_email: Annotated[str | None, typer.Option()] = None,
    sender_name: Annotated[str | None, typer.Option(help="Email From display name.")] = None,
    tone: Annotated[str | None, typer.Option(help="friendly or formal.")] = None,
    default_locale: Annotated[str | None, typer.Option(help="e.g. de-DE.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone, e.g. Europe/Berlin.")] = None,
    reset: Annotated[bool, typer.Option(help="Clear every field first (back to defaults).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show a tenant's branding, or change the given fields (an empty string clears one)."""
    from pydantic import ValidationError

    from return_notify.storage.db import session_scope
    from return_notify.templating.branding import BRANDING_FIELDS, BrandingUpdate, get_branding
    from return_notify.templating.versions import save_branding_audited

    require_database(_NO_DATABASE)
    given = {k: v for k, v in {
        "display_name": display_name, "logo_url": logo_url, "brand_color": brand_color,
        "accent_color": accent_color, "support_url": support_url, "support_email": support_email,
        "sender_name": sender_name, "tone": tone, "default_locale": default_locale,
        "timezone": timezone}.items() if v is not None}
    with session_scope() as s:
        tid = tenant_id(s, tenant)
        current = get_branding(s, tid)
        if given or reset:
            base = {} if reset else {k: getattr(current, k) for k in BRANDING_FIELDS}
            merged = {**base, **{k: (v or None) for k, v in given.items()}}
            merged = {k: v for k, v in merged.items() if v is not None}
            try:
                update = BrandingUpdate(**merged)
            except ValidationError as exc:
                fail(escape("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                      for e in exc.errors())), code=2)
            current = save_branding_audited(s, tid, update, audit_actor())
    data = {k: getattr(current, k) for k in BRANDING_FIELDS}
    if json_out:
        print_json({"tenant": tenant, **data, "revision": current.revision})
        return
    for k, v in data.items():
        console.print(f"{k:15} {'' if v is None else v}", markup=False, highlight=False)
