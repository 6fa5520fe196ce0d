"""The ``return-notify`` command line: one module per command group, shared helpers once.

``main`` is the console script's entry point (``return_notify.cli:main``) and
``python -m return_notify.cli`` runs it too. ``cli.main`` builds the app from the command
modules (``services``, ``events``, ``deliveries``, ``stats``, ``templates``, ``tenants``,
``rules``, ``sources``, ``preferences``, ``privacy``, ``tools``); they share ``cli.common``
and never import ``cli.main`` or each other. The CLI is an entry point: it may import
every layer below it (and ``devtools`` for ``demo``, ``bench`` and ``chaos``); nothing
in the package imports it.
"""

from __future__ import annotations


def main() -> None:
    """Run the ``return-notify`` command (imports the command modules on first use)."""
    from return_notify.cli.main import main as run

    run()
