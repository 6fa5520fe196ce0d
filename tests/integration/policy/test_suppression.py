"""The suppression list functions the deliver pipeline will call, on real PostgreSQL."""

from __future__ import annotations

import pytest

from return_notify.policy.suppression import is_suppressed, lift, suppress, suppressed_addresses
from return_notify.storage.db import session_scope
from tests.integration.api_helpers import ApiEnv, make_tenant, uid

pytestmark = pytest.mark.integration


def test_batch_check_matches_single_checks_in_one_query(api_env: ApiEnv) -> None:
    t1, _, _ = make_tenant()
    t2, _, _ = make_tenant()
    a, b, c = (f"{uid(x)}@example.com" for x in "abc")
    with session_scope() as s:
        assert suppress(s, t1, "email", a.upper(), "hard_bounce", source="test")
        assert not suppress(s, t1, "email", a, "unsubscribe")  # same key: kept as it was
        suppress(s, t2, "email", b, "spam_report")
        suppress(s, None, "email", c, "manual")  # every tenant
    with session_scope() as s:
        got = suppressed_addresses(s, [(t1, a), (t1, b), (t2, b), (t1, c), (t2, c),
                                       (t2, "nobody@example.com"), (t1, "")], "email")
        singles = {(t, x): is_suppressed(s, t, "email", x)
                   for t, x in [(t1, a), (t1, b), (t2, b), (t1, c), (t2, c)]}
    assert got == {(t1, a): "hard_bounce", (t2, b): "spam_report", (t1, c): "manual",
                   (t2, c): "manual"}
    assert {k: v for k, v in singles.items() if v} == got


def test_sender_scoping_and_lift_keeps_other_reasons(api_env: ApiEnv) -> None:
    tid, _, _ = make_tenant()
    phone, ours, other = "+14155550190", "+15005550006", "+15005550007"
    with session_scope() as s:
        suppress(s, tid, "sms", phone, "stop", sender=ours)
        suppress(s, tid, "sms", phone, "manual", sender=other)
    with session_scope() as s:
        assert suppressed_addresses(s, [(tid, phone)], "sms", sender=ours) == {(tid, phone): "stop"}
        assert lift(s, tid, "sms", phone, sender=ours) == 1
        assert is_suppressed(s, tid, "sms", phone, sender=ours) is None
        assert lift(s, tid, "sms", phone) == 0  # 'manual' is not lifted by START
        assert is_suppressed(s, tid, "sms", phone, sender=other) == "manual"
