"""The command line's shape: every command and group on ``return-notify``, one audit actor.

No database: the commands that write the audit log run against stand-ins of the storage
functions they call, which record the actor they are given.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from return_notify.access.audit import Actor
from return_notify.cli.common import audit_actor
from return_notify.cli.main import app

#: ``return-notify --help`` as it read before the CLI became one module per command group,
#: plus ``rejected``, ``test-recipients`` and ``insights`` (added after)
TOP_LEVEL = ["worker", "beat", "flower", "emit", "schema", "stats", "demo", "bench", "api",
             "report", "retention", "db", "deliveries", "dlq", "rejected", "templates",
             "test-recipients", "tenants", "inbox",
             "rules", "principals", "audit", "mappings", "streams", "carriers", "preferences",
             "quiet-hours", "throttle", "customers", "insights"]
GROUPS = {
    "db": ["upgrade", "partitions", "maintain", "rollup"],
    "deliveries": ["list", "show"],
    "dlq": ["list", "replay"],
    "rejected": ["list", "show"],
    "test-recipients": ["add", "list", "remove"],
    "templates": ["preview", "set", "list", "history", "rollback", "test-send", "branding"],
    "tenants": ["create", "list", "revoke-key"],
    "inbox": ["token", "secret"],
    "rules": ["list", "create", "update", "disable", "delete", "explain"],
    "principals": ["create", "list", "revoke-key"],
    "audit": ["list"],
    "mappings": ["list", "test"],
    "streams": ["listen", "info", "dead"],
    "carriers": ["secret", "unmatched", "rematch"],
    "preferences": ["get", "set", "clear"],
    "quiet-hours": ["get", "set"],
    "throttle": ["get", "set"],
    "customers": ["erase"],
    "insights": ["settings", "effectiveness", "channels", "timing", "apply-recommendation"],
}


def _names(command: Any) -> list[str]:
    return list(command.list_commands(typer.Context(command)))


def test_every_command_and_group_is_on_the_app_in_help_order() -> None:
    # given / when: the app the console script runs
    cli = typer.main.get_command(app)

    # then: --help lists every command and group it listed before, in the same order
    assert _names(cli) == TOP_LEVEL
    assert {name: _names(cli.commands[name]) for name in GROUPS} == GROUPS  # type: ignore[attr-defined]


def test_the_sources_module_runs_its_groups_on_its_own() -> None:
    # given: `python -m return_notify.cli.sources`, the listener's own entry point
    from return_notify.cli.sources import register

    own = typer.Typer()
    register(own)

    # when / then: it has the same three groups as return-notify
    assert _names(typer.main.get_command(own)) == ["mappings", "streams", "carriers"]


# ------------------------------------------------------------------ the audit actor ------

@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Actor]]]:
    """(command, actor) of every audited change a command makes; PostgreSQL never touched."""
    from return_notify.config.settings import reset_settings

    made: list[tuple[str, Actor]] = []

    @contextmanager
    def session_scope() -> Iterator[object]:
        yield object()

    def create_rule(_s: Any, _tid: int, _spec: Any, actor: Actor) -> object:
        made.append(("rules create", actor))
        return object()

    def rollback_override(_s: Any, _tid: int, _key: Any, _version: int, _scope: Any,
                          actor: Actor) -> None:
        made.append(("templates rollback", actor))

    def set_throttle(_s: Any, _tid: int, _cfg: Any, actor: Actor) -> bool:
        made.append(("throttle set", actor))
        return True

    monkeypatch.setenv("RSN_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/never-connected")
    reset_settings()
    monkeypatch.setattr("return_notify.storage.db.session_scope", session_scope)
    monkeypatch.setattr("return_notify.storage.tenants.find_tenant_id", lambda _s, _slug: 7)
    monkeypatch.setattr("return_notify.rules.store.create_rule", create_rule)
    monkeypatch.setattr("return_notify.rules.store.rule_dict", lambda _row: {"id": 1})
    monkeypatch.setattr("return_notify.templating.versions.rollback_override", rollback_override)
    monkeypatch.setattr("return_notify.policy.store.set_throttle", set_throttle)
    monkeypatch.setattr("return_notify.policy.views.throttle_view", lambda _s, _tid, _st: {})
    yield made
    reset_settings()


def _change_a_rule_a_template_and_a_throttle() -> None:
    runner = CliRunner()
    for args in (
        ["rules", "create", "-t", "acme", "--milestone", "label_created", "--channels", "email",
         "--json"],
        ["templates", "rollback", "--tenant", "acme", "--channel", "sms", "--milestone",
         "refund_processed", "--part", "text", "--version", "0", "--json"],
        ["throttle", "set", "-t", "acme", "--clear", "--json"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output


def _no_user(exc: type[Exception]) -> Callable[[], str]:
    def getuser() -> str:
        raise exc("no login name")

    return getuser


@pytest.mark.parametrize(("getuser", "name"), [
    (lambda: "alice", "cli:alice"),
    (_no_user(OSError), "cli:operator"),  # Python 3.13: no login name, no passwd entry
    (_no_user(KeyError), "cli:operator"),  # earlier Pythons
], ids=["login-name", "no-name-oserror", "no-name-keyerror"])
def test_one_operator_has_one_name_in_the_audit_log(
    changes: list[tuple[str, Actor]], monkeypatch: pytest.MonkeyPatch,
    getuser: Callable[[], str], name: str,
) -> None:
    # given: an operator whose login name is not $USER (su, sudo, a container's user)
    monkeypatch.setattr(getpass, "getuser", getuser)
    monkeypatch.setenv("USER", "bob")
    monkeypatch.setenv("USERNAME", "bob")

    # when: they change a rule, a template and a throttle from the command line
    _change_a_rule_a_template_and_a_throttle()

    # then: the audit log names them one way, the way audit_actor() does
    assert [command for command, _ in changes] == [
        "rules create", "templates rollback", "throttle set"]
    assert {actor for _, actor in changes} == {audit_actor()} == {Actor(None, name)}
