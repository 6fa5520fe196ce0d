"""``test-recipients add|list|remove``: the addresses template test sends may go to.

``templates test-send`` (and ``POST /v1/admin/templates/test-send``) only sends to a
verified test recipient of the tenant that is not on the suppression list. Through the
API an address is verified by a code sent to it; an operator at the command line (who holds
the database credentials) adds one as verified directly. ``register(app)`` adds the group.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from return_notify.cli.common import (
    JsonOpt,
    audit_actor,
    console,
    fail,
    print_json,
    require_database,
    tenant_id,
)

test_recipients_app = typer.Typer(
    help="Verified test recipients: the only addresses template test sends go to.",
    no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant slug.")]
ChannelOpt = Annotated[str, typer.Option(help="email or sms.")]


def register(app: typer.Typer) -> None:
    """Add the ``test-recipients`` group to the ``return-notify`` app."""
    app.add_typer(test_recipients_app, name="test-recipients")


@test_recipients_app.command("add")
def add(tenant: TenantOpt,
        address: Annotated[str, typer.Argument(help="Email address, or E.164 number for sms.")],
        channel: ChannelOpt = "email", json_out: JsonOpt = False) -> None:
    """Add ADDRESS as a verified test recipient of the tenant (audited)."""
    require_database()
    from return_notify.access.audit import record
    from return_notify.core.masking import mask
    from return_notify.policy.verified_recipients import add_verified
    from return_notify.storage.db import session_scope

    actor = audit_actor()
    with session_scope() as s:
        tid = tenant_id(s, tenant)
        try:
            rid = add_verified(s, tid, channel, address, actor.name)
        except ValueError as exc:
            fail(escape(f"{address!r}: {exc}"), code=2)
        record(s, tid, actor, "test_recipient.added", "templates", rid,
               after={"channel": channel, "address": mask(address)})
    if json_out:
        print_json({"id": rid, "tenant": tenant, "channel": channel, "verified": True})
    else:
        console.print(f"{escape(mask(address))} is a verified {channel} test recipient of "
                      f"{escape(tenant)} (id {rid})", highlight=False)


@test_recipients_app.command("list")
def list_(tenant: TenantOpt, json_out: JsonOpt = False) -> None:
    """The tenant's test recipients, verified or waiting for their code."""
    require_database()
    from return_notify.policy.verified_recipients import list_recipients
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        rows = [r.as_dict() for r in list_recipients(s, tenant_id(s, tenant))]
    if json_out:
        print_json(rows)
        return
    table = Table("id", "channel", "address", "verified", "added by")
    for r in rows:
        table.add_row(str(r["id"]), r["channel"], escape(r["address"]),
                      str(r["verified_at"])[:19] if r["verified"] else "no (code sent)",
                      escape(r["created_by"] or "-"))
    console.print(table)


@test_recipients_app.command("remove")
def remove(tenant: TenantOpt,
           recipient_id: Annotated[int, typer.Argument(help="The id from `list`.")]) -> None:
    """Remove a test recipient (audited)."""
    require_database()
    from return_notify.access.audit import record
    from return_notify.policy.verified_recipients import remove as remove_recipient
    from return_notify.storage.db import session_scope

    actor = audit_actor()
    with session_scope() as s:
        tid = tenant_id(s, tenant)
        if not remove_recipient(s, tid, recipient_id):
            fail(f"no test recipient {recipient_id} for {tenant!r}")
        record(s, tid, actor, "test_recipient.removed", "templates", recipient_id)
    console.print(f"test recipient {recipient_id} removed")
