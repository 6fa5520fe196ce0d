"""Compliant by default: a real email provider without RSN_UNSUBSCRIBE_SECRET refuses to
build (every email would lack List-Unsubscribe), and in-app links are https only."""

from __future__ import annotations

import pytest

from return_notify.channels.inapp_inbox import InboxChannel
from return_notify.config.settings import Settings
from return_notify.errors import ConfigurationError


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize("values", [
    {"email_provider": "sendgrid", "sendgrid_api_key": "SG.key"},
    {"email_provider": "smtp", "smtp_url": "smtp://127.0.0.1:25"},
    {"email_providers": "sandbox,smtp", "smtp_url": "smtp://127.0.0.1:25", "sandbox_record": False},
])
def test_a_real_email_provider_needs_an_unsubscribe_secret(values: dict[str, object]) -> None:
    from return_notify.channels.registry import build_channel, compliance_problems

    settings = _settings(**values)
    assert compliance_problems(settings)
    with pytest.raises(ConfigurationError, match="RSN_UNSUBSCRIBE_SECRET"):
        build_channel("email", settings)
    ok = build_channel("email", _settings(**values, unsubscribe_secret="s3cret"))
    ok.close()


def test_the_sandbox_needs_no_secret() -> None:
    from return_notify.channels.registry import compliance_problems

    assert compliance_problems(_settings(email_provider="sandbox")) == []


def test_the_worker_command_refuses_to_start_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from return_notify.cli.main import app
    from return_notify.config.settings import reset_settings

    for key, value in {"RSN_EMAIL_PROVIDER": "sendgrid", "RSN_SENDGRID_API_KEY": "SG.key",
                       "RSN_EMAIL_PROVIDERS": "", "RSN_BROKER_URL": "redis://127.0.0.1:9/0",
                       "RSN_DATABASE_URL": "postgresql://x@127.0.0.1:9/x"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RSN_UNSUBSCRIBE_SECRET", raising=False)
    reset_settings()
    try:
        result = CliRunner().invoke(app, ["worker", "-Q", "email"])
    finally:
        monkeypatch.undo()
        reset_settings()
    assert result.exit_code == 1
    assert "RSN_UNSUBSCRIBE_SECRET is not set" in " ".join(result.output.split())


@pytest.mark.parametrize(("url", "stored"), [
    ("https://shop.example/returns/1", "https://shop.example/returns/1"),
    ("javascript:alert(document.cookie)", None),
    ("JAVASCRIPT:alert(1)", None),
    ("data:text/html;base64,PHNjcmlwdD4=", None),
    ("http://shop.example/returns/1", None),
    ("//evil.example/x", None),
    ("https://shop.example/a b", None),
    ('https://shop.example/"onmouseover=', None),
    ("https://", None),
    (None, None),
])
def test_inbox_calls_to_action_are_https_only(url: str | None, stored: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from return_notify.config.settings import reset_settings

    monkeypatch.setenv("RSN_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
    reset_settings()
    try:
        channel = InboxChannel(engine=None, redis_client=None)
        assert channel._cta(url) == stored
        # this service's own status page passes whatever the configured base URL's scheme
        own = "http://127.0.0.1:8000/r/acme/RMA-1"
        assert channel._cta(own) == own
    finally:
        monkeypatch.undo()
        reset_settings()


def test_a_producers_link_is_the_call_to_action_only_if_https() -> None:
    from return_notify.templating.context import build_context

    payload = {"milestone": "label_created", "return_id": "RMA-1",
               "occurred_at": "2026-01-01T00:00:00+00:00", "customer": {},
               "data": {"label_url": "javascript:alert(1)"}}
    ctx = build_context(payload, "acme", None, "https://returns.example.com")
    assert ctx["cta_url"] == ctx["status_url"]
    payload["data"]["label_url"] = "https://labels.example/1.pdf"
    assert build_context(payload, "acme", None, "https://x.example")["cta_url"] == \
        "https://labels.example/1.pdf"
