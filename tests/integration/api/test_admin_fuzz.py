"""Property-based fuzz of the admin operations (schemathesis): no input gives a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api_helpers import ApiEnv, make_tenant

pytestmark = pytest.mark.integration


def test_admin_api_never_answers_500(api_env: ApiEnv) -> None:
    """Schemathesis over every admin operation (``/v1/admin``, quiet hours, throttle),
    authenticated as an owner."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    from return_notify.access.principals import create_principal, operator
    from return_notify.api.app import create_app
    from return_notify.storage.db import session_scope

    tid, slug, _ = make_tenant()
    with session_scope() as s:
        _, key = create_principal(s, operator(tid, slug, "fuzz"), "fuzz-owner", "owner")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operations = [r.ok() for r in schema.get_all_operations()
                  if r.ok().path.startswith(("/v1/admin", "/v1/quiet-hours", "/v1/throttle"))]
    assert len(operations) >= 19
    failures: list[str] = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            headers = dict(case.headers or {})
            headers.setdefault("Authorization", f"Bearer {key}")
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
