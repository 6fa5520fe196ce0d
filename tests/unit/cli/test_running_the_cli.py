"""Running the command line: an unreachable service gives one line and exit 3 (a JSON error
with --json), --version, options passed through to Celery and Flower, Flower's own variables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from return_notify.cli.common import EXIT_UNAVAILABLE, JsonOpt, run, unavailable_service


def _raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def cmd(json_out: JsonOpt = False) -> None:
        raise exc

    @app.command()
    def other() -> None:  # two commands: the app takes a command name
        pass

    return app


def _psycopg_outage() -> Exception:
    import psycopg2
    import sqlalchemy.exc

    orig = psycopg2.OperationalError('connection to server at "10.0.0.9", port 5432 failed: '
                                     "timeout expired\n")
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)


def test_outages_are_told_apart_from_other_errors() -> None:
    import psycopg2.errors
    import redis
    import sqlalchemy.exc
    from kombu.exceptions import OperationalError

    assert unavailable_service(_psycopg_outage()) == (
        "PostgreSQL", 'connection to server at "10.0.0.9", port 5432 failed: timeout expired')
    assert unavailable_service(redis.ConnectionError("Error 111 connecting"))[0] == "Redis"
    assert unavailable_service(redis.TimeoutError("Timeout reading"))[0] == "Redis"
    assert unavailable_service(OperationalError("[Errno 111] refused"))[0] == "Redis"
    wrapped = RuntimeError("upgrade failed")
    wrapped.__cause__ = redis.ConnectionError("down")
    assert unavailable_service(wrapped) == ("Redis", "down")
    # a cancelled query (statement_timeout) or a bad query is not an outage
    cancelled = sqlalchemy.exc.OperationalError("SELECT", {}, psycopg2.errors.QueryCanceled(
        "canceling statement due to statement timeout"))
    assert unavailable_service(cancelled) is None
    assert unavailable_service(ValueError("bad")) is None


@pytest.fixture
def argv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def set_args(*args: str) -> None:
        monkeypatch.setattr("sys.argv", ["return-notify", *args])

    monkeypatch.setenv("RSN_DATABASE_URL", "postgresql://rsn:secret@10.0.0.9:5432/rsn")
    from return_notify.config.settings import reset_settings

    reset_settings()
    yield set_args
    monkeypatch.undo()
    reset_settings()


def test_an_outage_is_one_line_and_exit_3(argv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv("cmd")
    with pytest.raises(SystemExit) as info:
        run(_raising(_psycopg_outage()))
    out, err = capsys.readouterr()
    assert info.value.code == EXIT_UNAVAILABLE == 3
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "PostgreSQL at postgresql://***@10.0.0.9:5432/rsn did not answer" in err
    assert "secret" not in err and "Traceback" not in err


def test_an_outage_with_json_is_a_json_error_object(argv: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import redis

    argv("cmd", "--json")
    with pytest.raises(SystemExit) as info:
        run(_raising(redis.ConnectionError("Error 111 connecting to redis:6379.")))
    out, _ = capsys.readouterr()
    assert info.value.code == 3
    assert json.loads(out) == {"error": "unavailable", "service": "redis", "url": "(unset)"
                               if not _broker() else _broker(),
                               "message": "Error 111 connecting to redis:6379."}


def _broker() -> str | None:
    from return_notify.config.settings import get_settings
    from return_notify.core.redis_urls import mask

    url = get_settings().broker_url
    return mask(url) if url else None


def test_any_other_error_keeps_its_traceback(argv: Any) -> None:
    argv("cmd")
    with pytest.raises(ZeroDivisionError):
        run(_raising(ZeroDivisionError("a bug")))


def test_version() -> None:
    from return_notify.cli.main import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("return-notify ")


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every argv the commands hand to Celery (worker_main, start); nothing really starts."""
    from return_notify.config.settings import reset_settings
    from return_notify.workers.app import app as celery_app

    calls: list[list[str]] = []
    monkeypatch.setattr(celery_app, "worker_main", lambda argv: calls.append(list(argv)))
    monkeypatch.setattr(celery_app, "start", lambda argv: calls.append(list(argv)))
    monkeypatch.setenv("RSN_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("RSN_DATABASE_URL", "postgresql://u@127.0.0.1:1/x")
    for name in ("RSN_FLOWER_BASIC_AUTH", "FLOWER_BASIC_AUTH", "FLOWER_PORT", "FLOWER_ADDRESS",
                 "FLOWER_AUTH", "FLOWER_MAX_TASKS", "FLOWER_DB"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield calls
    monkeypatch.undo()
    reset_settings()


def test_options_after_double_dash_reach_celery(started: list[list[str]]) -> None:
    from return_notify.cli.main import app

    result = CliRunner().invoke(app, ["worker", "-Q", "email", "--",
                                      "--without-heartbeat", "--max-tasks-per-child", "5"])
    assert result.exit_code == 0, result.output
    assert started[-1][-3:] == ["--without-heartbeat", "--max-tasks-per-child", "5"]
    assert started[-1][:3] == ["worker", "-Q", "email"]
    result = CliRunner().invoke(app, ["beat", "--schedule", "/var/lib/beat/s", "--",
                                      "--max-interval", "5"])
    assert result.exit_code == 0, result.output
    assert started[-1][-2:] == ["--max-interval", "5"] and "/var/lib/beat/s" in started[-1]


def test_flower_honours_its_own_variables(started: list[list[str]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from return_notify.cli.main import app

    # given: Flower configured the way its own documentation says
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:pw")
    monkeypatch.setenv("FLOWER_PORT", "5600")
    monkeypatch.setenv("FLOWER_MAX_TASKS", "5000")
    # when
    result = CliRunner().invoke(app, ["flower", "--", "--url_prefix=flower"])
    # then: it starts (no refusal for want of RSN_FLOWER_BASIC_AUTH) with those values
    assert result.exit_code == 0, result.output
    argv = started[-1]
    assert "--basic-auth=ops:pw" in argv and "--port=5600" in argv
    assert "--address=127.0.0.1" in argv  # never all interfaces by default
    assert not any(a.startswith("--max_tasks=") for a in argv)  # Flower reads its variable
    assert argv[-1] == "--url_prefix=flower"


def test_flower_without_any_credentials_is_refused(started: list[list[str]]) -> None:
    from return_notify.cli.main import app

    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == 1 and not started
    assert "FLOWER_BASIC_AUTH" in result.output


def test_db_upgrade_waits_for_postgresql_when_asked() -> None:
    from typer.main import get_command

    from return_notify.cli.main import app

    upgrade = get_command(app).commands["db"].commands["upgrade"]  # type: ignore[attr-defined]
    assert "--wait" in {o for p in upgrade.params for o in p.opts}

