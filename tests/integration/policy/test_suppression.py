"""The suppression list functions the deliver pipeline will call, on real PostgreSQL."""

from __future__ import annotations

from typing import Any

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


def test_every_channel_of_a_claim_is_looked_up_in_one_query(api_env: ApiEnv) -> None:
    """``suppressed_by_channel``: each channel's own suppressions and sender, one statement."""
    from sqlalchemy import event

    from return_notify.policy.suppression import suppressed_by_channel
    from return_notify.storage.db import get_engine

    tid, _, _ = make_tenant()
    mail, phone, phone2 = f"{uid('m')}@example.com", "+14155550191", "+14155550192"
    ours, other = "+15005550006", "+15005550007"
    with session_scope() as s:
        suppress(s, tid, "email", mail, "hard_bounce")
        suppress(s, tid, "sms", phone, "stop", sender=other)  # another sender's STOP
        suppress(s, tid, "sms", phone2, "manual")  # every sender
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        with session_scope() as s:
            got = suppressed_by_channel(s, {
                "email": ([(tid, mail.upper()), (tid, phone)], None),
                "sms": ([(tid, phone), (tid, phone2)], ours),
            })
            other_sender = suppressed_by_channel(s, {"sms": ([(tid, phone)], other)})
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    # the phone is not suppressed for email, and another sender's STOP is not ours
    assert got == {"email": {(tid, mail.upper()): "hard_bounce"},
                   "sms": {(tid, phone2): "manual"}}
    assert other_sender == {"sms": {(tid, phone): "stop"}}
    assert sum("FROM unnest" in st for st in statements) == 2  # one per call
