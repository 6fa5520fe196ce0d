"""The command line run in a subprocess, as an operator runs it, for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys


#: the operator commands without relying on how cli.py registers them
def run_cli(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "return_notify.cli", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def run_ops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``return-notify ARGS`` as an operator runs it (``report``, ``customers erase``, ...)."""
    return subprocess.run([sys.executable, "-m", "return_notify.cli", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
