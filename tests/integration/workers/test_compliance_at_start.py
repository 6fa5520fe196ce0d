"""A worker that would send real email without its one-click unsubscribe link does not
start, however it is started (the project's command or ``celery -A`` directly)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", [
    ["-m", "celery", "-A", "return_notify.workers.app", "worker", "-Q", "email", "-c", "1",
     "--without-gossip", "--without-mingle"],
    ["-m", "return_notify.cli", "worker", "-Q", "email", "-c", "1"],
])
def test_a_real_email_provider_without_an_unsubscribe_secret_refuses_to_start(
        svc: Any, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RSN_UNSUBSCRIBE_SECRET"}
    env.update(svc.env(RSN_EMAIL_PROVIDER="sendgrid", RSN_SENDGRID_API_KEY="SG.test",
                       RSN_EMAIL_PROVIDERS="", RSN_WARM_TEMPLATES="false"))
    proc = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "RSN_UNSUBSCRIBE_SECRET is not set" in said
