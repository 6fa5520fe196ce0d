"""Embedded Redis and PostgreSQL from wheels: real servers that work, then leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
import redis
import sqlalchemy

from return_notify.devtools.embedded import EmbeddedServerError, EmbeddedServers, embedded_available
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _require_embedded() -> None:
    ok, reason = embedded_available()
    if not ok:  # a declared dependency is missing: fail loudly rather than skip
        pytest.fail(f"embedded servers unavailable: {reason}")


def _process_tree(pids: dict[str, int]) -> list[psutil.Process]:
    procs = []
    for pid in pids.values():
        main = psutil.Process(pid)
        procs += [main, *main.children(recursive=True)]
    return procs


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in procs if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in procs if not _gone(p)]


def test_real_servers_round_trip_and_stop_cleanly() -> None:
    started = time.monotonic()
    with EmbeddedServers() as servers:
        startup = time.monotonic() - started
        directory = servers.directory
        assert directory is not None and directory.is_dir()
        procs = _process_tree(servers.pids)
        assert {"redis", "postgres"} == set(servers.pids)
        assert servers.redis_url.startswith("redis://127.0.0.1:")
        assert servers.database_url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")
        assert servers.database_url.endswith("/return_notify")

        client = redis.Redis.from_url(servers.redis_url)
        try:
            client.set("rsn:embedded", "hello")
            assert client.get("rsn:embedded") == b"hello"
            info = cast(dict[str, Any], client.info("server"))
            assert int(info["process_id"]) == servers.pids["redis"]
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
        finally:
            client.close()

        engine = sqlalchemy.create_engine(servers.database_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE probe (id serial PRIMARY KEY, body text)")
                conn.exec_driver_sql("INSERT INTO probe (body) VALUES ('hello')")
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT body FROM probe").scalar_one() == "hello"
                assert int(conn.exec_driver_sql("SHOW max_connections").scalar_one()) >= 100
                assert conn.exec_driver_sql("SHOW listen_addresses").scalar_one() == "127.0.0.1"
        finally:
            engine.dispose()

    assert _wait_gone(procs) == [], "server processes survived stop()"
    assert not directory.exists()
    servers.stop()  # idempotent
    assert startup < 20, f"start-up took {startup:.1f}s"


def test_urls_need_a_started_server() -> None:
    servers = EmbeddedServers(postgres=False)
    with pytest.raises(EmbeddedServerError):
        _ = servers.redis_url
    with servers:
        assert set(servers.pids) == {"redis"}
        with pytest.raises(EmbeddedServerError):
            _ = servers.database_url


def test_servers_die_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, time
        from return_notify.devtools.embedded import EmbeddedServers
        servers = EmbeddedServers().start()
        print(json.dumps({"pids": servers.pids, "dir": str(servers.directory)}), flush=True)
        time.sleep(120)
        """
    )
    root = str(REPO_ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    stderr = tmp_path / "parent.stderr"
    with open(stderr, "wb") as err:
        parent = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    if line:
        info = json.loads(line)
        procs = _process_tree(info["pids"])
    parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only PR_SET_PDEATHSIG helps
    parent.wait()
    parent.stdout.close()
    if not line:
        pytest.fail(f"the parent did not start the servers:\n{stderr.read_text()[-3000:]}")
    try:
        assert _wait_gone(procs) == [], "servers outlived a SIGKILLed parent"
    finally:
        shutil.rmtree(info["dir"], ignore_errors=True)  # a SIGKILLed parent cannot clean up
