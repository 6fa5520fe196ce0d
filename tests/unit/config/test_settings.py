"""Settings come from ``RSN_*`` variables and never show a secret."""

from __future__ import annotations

import pytest

from return_notify.config.settings import Settings


def test_settings_come_from_rsn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSN_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("RSN_SENDGRID_API_KEY", "SG.secret")
    s = Settings()
    assert s.max_attempts == 9
    assert "SG.secret" not in repr(s)
