"""Worker pool profiles (``worker --profile``): processes and provider calls in flight."""

from __future__ import annotations

import pytest


def test_delivery_profile_sets_processes_and_provider_calls_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from return_notify.cli.services import _apply_profile
    from return_notify.config.settings import get_settings

    monkeypatch.delenv("RSN_PROVIDER_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    try:
        assert _apply_profile("delivery", None) == 12
        assert os.environ["RSN_PROVIDER_CONCURRENCY"] == "64"
        assert get_settings().provider_concurrency == 64  # the cached settings were re-read
        assert _apply_profile("ingest", None) == 3
        assert _apply_profile("delivery", 5) == 5  # -c wins
    finally:
        monkeypatch.delenv("RSN_PROVIDER_CONCURRENCY", raising=False)
        from return_notify.config.settings import reset_settings

        reset_settings()


def test_a_set_provider_concurrency_wins_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from return_notify.cli.services import _apply_profile

    monkeypatch.setenv("RSN_PROVIDER_CONCURRENCY", "12")
    _apply_profile("delivery", None)
    assert os.environ["RSN_PROVIDER_CONCURRENCY"] == "12"


def test_an_unknown_profile_is_refused_with_the_known_ones() -> None:
    import typer

    from return_notify.cli.services import _apply_profile

    with pytest.raises(typer.Exit):
        _apply_profile("turbo", None)
