"""Untrusted template work (previews, validation) in a child process with hard limits.

The guarded sandbox (``templating.sandbox``) counts a tenant template's operations, time and
output, but counting is cooperative: it stops a render at its next check, and one built-in
filter call, a parse of a pathological source or a bug in a check runs until it returns.
Renders that anyone with a viewer key can ask for at will (``POST …/templates/preview`` and
``…/validate``, and the validation of a save) therefore run in a child process that the
kernel stops, whatever the template does:

* ``RLIMIT_CPU``: the child is killed after ``cpu_s`` seconds of CPU (``SIGXCPU``);
* ``RLIMIT_AS``: it cannot map more than ``memory_mb`` beyond what it started with (an
  allocation past that fails with ``MemoryError``, reported as a limit);
* a wall clock of ``wall_s``: the parent kills a child that sleeps or waits;
* at most ``concurrency`` children per process at a time; a caller waits for a slot up to
  the wall clock, then gets :class:`SandboxBusy`.

Children come from a ``forkserver`` that preloads the rendering modules once, so a child
costs a fork (a few milliseconds) instead of an interpreter start, and never inherits the
API's threads, sockets or database connections. The API process itself never holds a
tenant template's output: its memory stays flat whatever is previewed.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from return_notify.templating.errors import TemplateRenderError

__all__ = ["ProcessLimits", "SandboxBusy", "run_isolated", "warm_up"]

log = logging.getLogger(__name__)

#: modules the children need, imported once by the fork server (by name: the preview's
#: module sits above this package and is never imported from here)
PRELOAD = ("return_notify.templating.render", "return_notify.templating.validation",
           "return_notify.templating.isolation", "return_notify.pipeline.preview")


@dataclass(frozen=True)
class ProcessLimits:
    """Hard limits of one isolated call."""

    cpu_s: float = 2.0
    memory_mb: int = 256
    wall_s: float = 5.0
    concurrency: int = 2


class SandboxBusy(RuntimeError):
    """Every sandbox slot of this process stayed busy for the whole wait."""


_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}
_preload: list[str] = list(PRELOAD)


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_preload)
    return ctx


def _slot(concurrency: int) -> threading.BoundedSemaphore:
    with _lock:
        slot = _slots.get(concurrency)
        if slot is None:
            slot = _slots[concurrency] = threading.BoundedSemaphore(max(1, concurrency))
        return slot


def warm_up(extra_modules: Sequence[str] = ()) -> None:
    """Start the fork server now (it imports the rendering modules once, ~1 s), so the first
    preview does not pay for it. ``extra_modules`` are preloaded too (the callers' own)."""
    for name in extra_modules:
        if name not in _preload:
            _preload.append(name)
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def _limit_child(cpu_s: float, memory_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump a core
    cpu = max(1, math.ceil(cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # no /proc (not Linux): the CPU limit and the wall clock still hold
    cap = mapped + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _child(conn: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
           cpu_s: float, memory_mb: int) -> None:
    _limit_child(cpu_s, memory_mb)
    try:
        out: tuple[Any, ...] = ("ok", func(*args, **kwargs))
    except TemplateRenderError as exc:
        out = ("render", exc.template, exc.reason)
    except MemoryError:
        out = ("memory",)
    except RecursionError:
        out = ("render", "<template>", "render limit exceeded: nested too deeply (recursion)")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost
        out = ("error", type(exc).__name__, str(exc)[:500])
    try:
        conn.send(out)
    except MemoryError:
        conn.send(("memory",))
    finally:
        conn.close()


def _limit_error(what: str) -> TemplateRenderError:
    return TemplateRenderError("<sandbox>", f"render limit exceeded: {what}")


def run_isolated(func: Callable[..., Any], *args: Any, process_limits: ProcessLimits | None = None,
                 **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in a limited child process; its return value.

    ``func`` must be a module-level function and its arguments and result picklable.
    Raises :class:`TemplateRenderError` for a template error or an exceeded limit (CPU,
    memory, wall clock), :class:`SandboxBusy` when no slot frees up in time, and
    ``RuntimeError`` when the child fails in another way.
    """
    limits = process_limits or ProcessLimits()
    slot = _slot(limits.concurrency)
    if not slot.acquire(timeout=limits.wall_s):
        raise SandboxBusy("every template sandbox is busy; retry shortly")
    try:
        return _run(func, args, kwargs, limits)
    finally:
        slot.release()


def _run(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         limits: ProcessLimits) -> Any:
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, func, args, kwargs, limits.cpu_s,
                                             limits.memory_mb), daemon=True)
    proc.start()
    sender.close()
    message: tuple[Any, ...] | None = None
    timed_out = False
    try:
        if receiver.poll(limits.wall_s):
            message = receiver.recv()
        else:
            timed_out = True
    except (EOFError, OSError):
        message = None  # the child died before it answered
    finally:
        receiver.close()
        proc.join(0.5 if message is not None else 0.1)
        if proc.is_alive():
            proc.kill()
            proc.join(2)
    if message is None:
        code = proc.exitcode
        if code == -signal.SIGXCPU or code == -signal.SIGKILL and not timed_out:
            raise _limit_error(f"used more than {limits.cpu_s:g} s of CPU")
        if timed_out:
            raise _limit_error(f"took longer than {limits.wall_s:g} s")
        raise _limit_error(f"the render process ended without an answer (exit {code}); "
                           "it probably ran out of memory")
    kind = message[0]
    if kind == "ok":
        return message[1]
    if kind == "render":
        raise TemplateRenderError(message[1], message[2])
    if kind == "memory":
        raise _limit_error(f"used more than {limits.memory_mb} MB of memory")
    log.error("isolated %s failed: %s: %s", getattr(func, "__name__", func), message[1],
              message[2])
    raise RuntimeError(f"the template sandbox failed: {message[1]}")
