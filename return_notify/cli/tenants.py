"""CLI commands of the HTTP side: ``api``, ``tenants create|list|revoke-key``, ``inbox token|secret``.

``cli.py`` calls ``register(app)``; nothing here imports FastAPI until a command runs.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

tenants_app = typer.Typer(help="Tenants (merchants/brands) and their API keys.",
                          no_args_is_help=True)
inbox_app = typer.Typer(help="In-app inbox tokens for retailers' apps.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _require_database() -> None:
    from return_notify.config.settings import get_settings

    if not get_settings().database_url:
        _fail("RSN_DATABASE_URL is not set. Point it at PostgreSQL (see README).")


def _inbox_master() -> str:
    from return_notify.config.settings import get_settings

    secret = get_settings().inbox_token_secret
    if secret is None:
        _fail("RSN_INBOX_TOKEN_SECRET is not set (e.g. `openssl rand -hex 32`)")
        raise AssertionError  # unreachable
    return secret.get_secret_value()


def api(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        help="Proxies trusted for X-Forwarded-* (comma-separated), e.g. the load balancer.")
    ] = None,
) -> None:
    """Serve the HTTP API with uvicorn (OpenAPI docs at /docs). Logs go through the
    project's logging (JSON lines with RSN_LOG_JSON=true, recipients masked), in every
    server process."""
    _require_database()
    import uvicorn

    from return_notify.observability.logs import uvicorn_log_config

    uvicorn.run("return_notify.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips, server_header=False,
                log_config=uvicorn_log_config(log_level))


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant slug, as events name it (e.g. acme).")],
    display_name: Annotated[str | None, typer.Option(help="Brand name shown to customers.")]
    = None,
    key_name: Annotated[str | None, typer.Option(help="Label for the API key.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a tenant (if missing) and an API key; the key is printed once, never stored."""
    if not _SLUG.match(name):
        _fail(f"{name!r} is not a slug: lowercase letters, digits, '-' and '_', "
              "starting with a letter or digit")
    _require_database()
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
        _print_json({"tenant": name, "tenant_id": tenant_id, "created": created,
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
    _require_database()
    from return_notify.access.tenant_keys import list_tenants
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = list_tenants(s)
    if json_out:
        _print_json(rows)
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
    _require_database()
    from return_notify.access.tenant_keys import revoke_api_key
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        done = revoke_api_key(s, prefix)
    if not done:
        _fail(f"no active key with prefix {prefix!r}")
    console.print(f"revoked key {prefix}")


@inbox_app.command("token")
def inbox_token(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    customer: Annotated[str, typer.Option(help="Customer id, as in events' customer.id.")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds (default "
                                            "RSN_INBOX_TOKEN_TTL_S).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Mint a customer inbox token (what a retailer's backend does with mint_inbox_token)."""
    from return_notify.config.settings import get_settings
    from return_notify.inbox import mint_inbox_token, tenant_inbox_secret

    master = _inbox_master()
    ttl_s = ttl or get_settings().inbox_token_ttl_s
    if ttl_s <= 0:
        _fail("--ttl must be positive")
    token = mint_inbox_token(tenant, customer, ttl_s, tenant_inbox_secret(master, tenant))
    if json_out:
        _print_json({"token": token, "tenant": tenant, "ttl_s": ttl_s})
    else:
        sys.stdout.write(token + "\n")


@inbox_app.command("secret")
def inbox_secret(tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """Print the tenant's inbox secret, for its backend to mint tokens itself."""
    from return_notify.inbox import tenant_inbox_secret

    sys.stdout.write(tenant_inbox_secret(_inbox_master(), tenant) + "\n")


def register(app: typer.Typer) -> None:
    """Add the HTTP-side commands to the ``return-notify`` app."""
    app.command("api")(api)
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(inbox_app, name="inbox")
