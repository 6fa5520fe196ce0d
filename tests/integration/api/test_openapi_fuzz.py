"""Property-based fuzz of every documented operation (schemathesis): no input gives a 500.

Requests carry a valid tenant API key and a valid inbox token, so generated inputs reach
the handlers and the database instead of stopping at 401. The SSE stream is excluded
(it never ends by design; its tests are in ``api/test_inbox.py``). Driven through
hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api_helpers import INBOX_MASTER, ApiEnv, make_tenant

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz_auth(api_env: ApiEnv) -> dict[str, str]:
    from return_notify.inbox import mint_inbox_token, tenant_inbox_secret

    _, slug, key = make_tenant("acme")
    token = mint_inbox_token(slug, "c-1", 3600, tenant_inbox_secret(INBOX_MASTER, slug))
    return {"api_key": key, "inbox_token": token}


def _operations() -> list[Any]:
    from return_notify.api.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app()).exclude(
        path="/v1/inbox/stream")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzzer(operation: Any, token: str) -> Any:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        headers = dict(case.headers or {})
        headers.setdefault("Authorization", f"Bearer {token}")
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    return fuzz


def test_no_input_causes_a_server_error(fuzz_auth: dict[str, str]) -> None:
    failures: list[str] = []
    operations = _operations()
    assert len(operations) >= 10
    for operation in operations:
        token = fuzz_auth["inbox_token"] if operation.path.startswith("/v1/inbox") \
            else fuzz_auth["api_key"]
        try:
            _fuzzer(operation, token)()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
