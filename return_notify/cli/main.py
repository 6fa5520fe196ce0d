"""The ``return-notify`` app: every command module's commands and groups on one Typer app.

The top-level commands are listed here in the order ``--help`` shows them; each command
module's ``register(app)`` adds its groups. Command modules import ``common`` and the layers
below, never this module or each other; their heavy imports happen when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from return_notify.cli import (
    deliveries,
    events,
    insights,
    preferences,
    privacy,
    rejected,
    rules,
    services,
    sources,
    stats,
    templates,
    tenants,
    test_recipients,
    tools,
)
from return_notify.cli.common import run, version_callback

app = typer.Typer(
    help="Return status notifications: return milestone events in, email/SMS/in-app out.\n\n"
    "Settings come from RSN_* environment variables (or .env); see README.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
)


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=version_callback, is_eager=True,
        help="Print the installed version and exit.")] = False,
) -> None:
    """Return status notifications: return milestone events in, email/SMS/in-app out.

    Settings come from RSN_* environment variables (or .env); see README. A service that
    does not answer (PostgreSQL, Redis) ends any command with one line and exit status 3.
    """

#: the top-level commands, in ``--help`` order: run the services, feed events, measure
COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("worker", services.worker),
    ("beat", services.beat),
    ("flower", services.flower),
    ("emit", events.emit),
    ("schema", events.schema),
    ("stats", stats.stats),
    ("demo", tools.demo),
    ("bench", tools.bench),
    ("api", services.api),
    ("report", stats.report),
    ("retention", privacy.retention),
)

#: each adds its module's command groups (``db``, ``deliveries`` and ``dlq``, ...), in
#: ``--help`` order
REGISTER_GROUPS: tuple[Callable[[typer.Typer], None], ...] = (
    services.register, deliveries.register, rejected.register, templates.register,
    test_recipients.register, tenants.register, rules.register, sources.register,
    preferences.register, privacy.register, insights.register,
)

for _name, _command in COMMANDS:
    app.command(_name)(_command)
for _register in REGISTER_GROUPS:
    _register(app)


def main() -> None:
    """Run the ``return-notify`` command (an unreachable service: one line, exit 3)."""
    run(app)


if __name__ == "__main__":
    main()
