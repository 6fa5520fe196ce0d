"""Start and stop the project's own processes (workers, beat) as real subprocesses.

Used by the demo, the benchmark and the integration tests, so all three run exactly the
``return-notify worker`` / ``beat`` commands that docker-compose.yml runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_live: list[subprocess.Popen[bytes]] = []


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: Path
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> int | None:
        return stop_process(self.popen, timeout_s)

    def kill(self) -> None:
        _signal_group(self.popen, signal.SIGKILL)
        self.popen.wait(10)


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(p: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int | None:
    """Warm shutdown, then SIGKILL the whole group.

    SIGTERM goes to the main process only: a Celery worker then finishes its running tasks
    and returns its prefetched messages. Sent to the whole group it would also reach the
    pool children, which die mid-task (WorkerLostError) and whose sends are repeated.
    """
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(p, signal.SIGKILL)  # pool children or stragglers of the group
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if p in _live:
        _live.remove(p)
    return p.returncode


@atexit.register
def _cleanup() -> None:
    for p in list(_live):
        stop_process(p, 5)


def _spawn(name: str, args: list[str], env: dict[str, str], logdir: str | None) -> Proc:
    logdir = logdir or tempfile.mkdtemp(prefix="rsn-logs-")
    logfile = Path(logdir) / f"{name}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(logfile, "ab") as fh:
        popen = subprocess.Popen(
            [sys.executable, "-m", "return_notify.cli", *args],
            env=full_env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _live.append(popen)
    return Proc(name, popen, logfile)


def start_worker(
    env: dict[str, str], *, queues: str | None = None, concurrency: int = 2,
    pool: str = "prefork", name: str = "worker", logdir: str | None = None,
    ready_timeout_s: float = 60.0, loglevel: str = "INFO",
) -> Proc:
    args = ["worker", "-c", str(concurrency), "-P", pool, "-l", loglevel,
            "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"]
    if queues:
        args += ["-Q", queues]
    logdir = logdir or tempfile.mkdtemp(prefix="rsn-logs-")
    ready = Path(logdir) / f"{name}-{time.monotonic_ns()}.ready"
    proc = _spawn(name, args, {**env, "RSN_READY_FILE": str(ready)}, logdir)
    wait_for(proc, ready.exists, ready_timeout_s)
    return proc


def start_beat(env: dict[str, str], *, logdir: str | None = None) -> Proc:
    logdir = logdir or tempfile.mkdtemp(prefix="rsn-logs-")
    proc = _spawn("beat", ["beat", "--schedule", str(Path(logdir) / "beat-schedule")], env, logdir)
    wait_for_log(proc, "beat: Starting", 30.0)
    return proc


def wait_for_log(proc: Proc, needle: str, timeout_s: float) -> None:
    def seen() -> bool:
        try:
            return needle in proc.logfile.read_text(errors="replace")
        except OSError:
            return False

    wait_for(proc, seen, timeout_s)


def wait_for(proc: Proc, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        if check():
            return
        time.sleep(0.1)
    proc.stop(5)
    raise RuntimeError(f"{proc.name} not ready after {timeout_s:.0f}s:\n{proc.log_tail()}")


def start_flower(
    env: dict[str, str], *, port: int, basic_auth: str | None = None,
    logdir: str | None = None, state_db: str | None = None,
    extra_args: Sequence[str] = (), ready_timeout_s: float = 60.0,
) -> Proc:
    """Start ``return-notify flower`` on 127.0.0.1:``port`` and wait for ``/healthcheck``.

    The credentials travel in the environment (``RSN_FLOWER_BASIC_AUTH``), never on a
    command line; ``basic_auth=None`` starts it with ``--no-auth``. ``extra["url"]`` is its URL.
    """
    logdir = logdir or tempfile.mkdtemp(prefix="rsn-logs-")
    args = ["flower", "--port", str(port), "--address", "127.0.0.1",
            "--db", state_db or str(Path(logdir) / "flower-state.db"), *extra_args]
    if basic_auth is None:
        args.append("--no-auth")
    proc = _spawn("flower", args, {**env, "RSN_FLOWER_BASIC_AUTH": basic_auth or ""}, logdir)
    url = f"http://127.0.0.1:{port}"
    proc.extra["url"] = url
    wait_for(proc, lambda: _answers(url + "/healthcheck"), ready_timeout_s)
    return proc


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
