"""Tenants and in-app inbox tokens: ``tenants create|list|revoke-key`` and ``inbox token|secret``.

``register(app)`` adds the ``tenants`` and ``inbox`` groups; nothing here imports FastAPI
until a command runs (``tenants create`` borrows the API's key functions, not its app).
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer
from rich.table import Table

from return_notify.cli.common import JsonOpt, console, fail, print_json, require_database

tenants_app = typer.Typer(help="Tenants (merchants/brands) and their API keys.",
                          no_args_is_help=True)
inbox_app = typer.Typer(help="In-app inbox tokens for retailers' apps.", no_args_is_help=True)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _inbox_master() -> str:
    from return_notify.config.settings import get_settings

    secret = get_settings().inbox_token_secret
    if secret is None:
        fail("RSN_INBOX_TOKEN_SECRET is not set (e.g. `openssl rand -hex 32`)")
    return secret.get_secret_value()


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant slug, as events name it (e.g. acme).")],
    display_name: Annotated[str | None, typer.Option(help="Brand name shown to customers.")]
    = None,
    key_name: Annotated[str | None, typer.Option(help="Label for the API key.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a tenant (if missing) and an API key; the key is printed once, never stored."""
    if not _SLUG.fullmatch(name):
        fail(f"{name!r} is not a slug: lowercase letters, digits, '-' and '_', "
             "starting with a letter or digit")
    require_database()
    from return_notify.access.tenant_keys import create_tenant, issue_api_key
    from return_notify.config.settings import get_settings
    from return_notify.inbox import tenant_inbox_secret
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        tenant_id, created = create_tenant(s, name, display_name)
        key = issue_api_key(s, tenant_id, key_name)
    master = get_settings().inbox_token_secret
    inbox_secret = tenant_inbox_secret(master.get_secret_value(), name) if master else None
    if json_out:
        print_json({"tenant": name, "tenant_id": tenant_id, "created": created,
                    "api_key": key, "inbox_secret": inbox_secret})
        return
    console.print(f"tenant [bold]{name}[/] ({'created' if created else 'existing'}, id "
                  f"{tenant_id})")
    console.print(f"API key (shown once, store it now): [bold]{key}[/]", soft_wrap=True)
    if inbox_secret:
        console.print(f"inbox token secret for this tenant's backend: [bold]{inbox_secret}[/]",
                      soft_wrap=True)


@tenants_app.command("list")
def tenants_list(json_out: JsonOpt = False) -> None:
    """List tenants with their active API key prefixes (never the keys)."""
    require_database()
    from return_notify.access.tenant_keys import list_tenants
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = list_tenants(s)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "slug", "name", "active keys", "key prefixes", "created")
    for r in rows:
        table.add_row(str(r["id"]), r["slug"], r["name"] or "", str(r["active_keys"]),
                      ", ".join(r["key_prefixes"] or []), str(r["created_at"])[:19])
    console.print(table)


@tenants_app.command("revoke-key")
def tenants_revoke_key(
    prefix: Annotated[str, typer.Argument(help="The key prefix (the part after 'rsn_').")],
) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    require_database()
    from return_notify.access.tenant_keys import revoke_api_key
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        done = revoke_api_key(s, prefix)
    if not done:
        fail(f"no active key with prefix {prefix!r}")
    console.print(f"revoked key {prefix}")


@inbox_app.command("token")
def inbox_token(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    customer: Annotated[str, typer.Option(help="Customer id, as in events' customer.id.")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds (default "
                                            "RSN_INBOX_TOKEN_TTL_S; at most "
                                            "RSN_INBOX_TOKEN_MAX_TTL_S).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Mint a customer inbox token (what a retailer's backend does with mint_inbox_token)."""
    from return_notify.config.settings import get_settings
    from return_notify.inbox import mint_inbox_token, tenant_inbox_secret

    master = _inbox_master()
    settings = get_settings()
    ttl_s = ttl or settings.inbox_token_ttl_s
    if ttl_s <= 0:
        fail("--ttl must be positive")
    if ttl_s > settings.inbox_token_max_ttl_s:
        fail(f"--ttl must be at most {settings.inbox_token_max_ttl_s} s "
             "(RSN_INBOX_TOKEN_MAX_TTL_S): the API refuses tokens that live longer")
    token = mint_inbox_token(tenant, customer, ttl_s, tenant_inbox_secret(master, tenant),
                             max_ttl_s=settings.inbox_token_max_ttl_s)
    if json_out:
        print_json({"token": token, "tenant": tenant, "ttl_s": ttl_s})
    else:
        sys.stdout.write(token + "\n")


@inbox_app.command("secret")
def inbox_secret(tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """Print the tenant's inbox secret, for its backend to mint tokens itself."""
    from return_notify.inbox import tenant_inbox_secret

    sys.stdout.write(tenant_inbox_secret(_inbox_master(), tenant) + "\n")


def register(app: typer.Typer) -> None:
    """Add the ``tenants`` and ``inbox`` groups to the ``return-notify`` app."""
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(inbox_app, name="inbox")
