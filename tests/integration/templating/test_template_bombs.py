"""Template bombs against a running API and worker: previews, validations and stored overrides.

The bypasses that were reproduced (output built in set-blocks, macro bodies, filter and call
blocks, a wordwrap with a 1,000-character wrapstring, a within-budget loop validated for
every milestone) are sent as a viewer would, to the API server process; the API's memory
must stay flat (they render in the limited sandbox process) and every answer is a 4xx or a
200 with the problems. The same templates stored as overrides (past validation, as if
written into the database by hand) fail their deliveries with the reason; the worker lives.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.helpers import event, wait_until
from tests.integration.api_helpers import make_tenant
from tests.integration.hostile_helpers import FIGURES, HostileKeys, LiveClient, bearer

pytestmark = pytest.mark.integration

MB = 1024 * 1024
DOUBLED = ("{% set ns = namespace(s='ab') %}{% for i in range(13) %}{% set ns.s = ns.s ~ ns.s %}"
           "{% endfor %}")
LINK = " {{ return_id }} {{ cta_url }}"
BOMBS = {
    # the issue's: 16,384 characters looped 4,000 (then 10,000) times inside a set-block
    "set_block": DOUBLED + "{% set x %}{% for i in range(4000) %}{{ ns.s }}{% endfor %}"
                 "{% endset %}built {{ x|length }} chars" + LINK,
    "set_block_10000": DOUBLED + "{% set x %}{% for i in range(10000) %}{{ ns.s }}"
                       "{% endfor %}{% endset %}{{ x|length }}" + LINK,
    "macro_body": DOUBLED + "{% macro m() %}{% for i in range(4000) %}{{ ns.s }}{% endfor %}"
                  "{% endmacro %}{{ m()|length }}" + LINK,
    "filter_block": DOUBLED + "{% filter length %}{% for i in range(4000) %}{{ ns.s }}"
                    "{% endfor %}{% endfilter %}" + LINK,
    "call_block": DOUBLED + "{% macro w() %}{{ caller()|length }}{% endmacro %}{% call w() %}"
                  "{% for i in range(4000) %}{{ ns.s }}{% endfor %}{% endcall %}" + LINK,
    "wordwrap": DOUBLED + "{{ ns.s|wordwrap(1, wrapstring='" + "z" * 1000 + "')|length }}" + LINK,
    "template_text": "{% set x %}{% for i in range(10000) %}" + "y" * 4000 +
                     "{% endfor %}{% endset %}{{ x|length }}" + LINK,
    "nested_parentheses": "{{ " + "(" * 1900 + "1" + ")" * 1900 + " }}" + LINK,
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_previews_and_validations_of_bombs_cost_the_api_nothing(
        live_client: LiveClient, hostile_keys: HostileKeys, name: str) -> None:
    before = live_client.proc.memory_info().rss
    auth = bearer(hostile_keys.viewer)
    preview = live_client.post("/v1/admin/templates/preview", headers=auth, json={
        "channel": "sms", "milestone": "refund_processed", "drafts": {"text": BOMBS[name]}})
    assert preview.status_code == 422, preview.text[:300]
    assert "limit" in preview.text or "nested" in preview.text, preview.text[:300]
    checked = live_client.post("/v1/admin/templates/validate", headers=auth, json={
        "channel": "sms", "milestone": "*", "part": "text", "locale": "en",
        "source": BOMBS[name]})
    assert checked.status_code == 200 and checked.json()["ok"] is False, checked.text[:300]
    grew = (live_client.proc.memory_info().rss - before) / MB
    FIGURES.template_bombs += 2
    assert grew < 32, f"{name}: the API grew by {grew:.0f} MB"


def test_a_loop_within_the_limits_validated_for_every_milestone_is_bounded(
        live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    # under every per-render limit, rendered 26 times: 2.1 s of API CPU per request before
    slow = ("{% set ns = namespace(s='ab') %}{% for i in range(15) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}{% for i in range(3000) %}{{ '' if ns.s|wordcount else '' }}"
            "{% endfor %}" + LINK)
    r = live_client.post("/v1/admin/templates/validate", headers=bearer(hostile_keys.viewer),
                         json={"channel": "sms", "milestone": "*", "part": "text",
                               "locale": "en", "source": slow})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["ok"] is False
    assert any("too slow" in p or "limit" in p for p in r.json()["problems"]), r.json()
    FIGURES.template_bombs += 1


def _accept_anything(*_: Any) -> Any:
    from return_notify.templating.validation import ValidationResult

    return ValidationResult(ok=True)


def test_stored_bombs_fail_their_deliveries_and_the_worker_lives(live_client: LiveClient) -> None:
    from return_notify.access.principals import operator
    from return_notify.storage.db import session_scope
    from return_notify.templating.validation import OverrideKey
    from return_notify.templating.versions import save_override

    # given the set-block bomb stored as a new tenant's SMS override, past validation (a
    # tenant of its own: the fuzzing elsewhere stores overrides of other scopes)
    tid, slug, key = make_tenant()
    with session_scope() as s:
        save_override(s, tid, OverrideKey("sms", "refund_processed", "text", "en"),
                      BOMBS["set_block_10000"], operator(tid, slug, "t").actor,
                      validate=_accept_anything)
    # when an event that sends an SMS comes in
    ev = event("refund_processed", tenant=slug, email=None)
    r = live_client.post("/v1/events", json=ev, headers=bearer(key))
    assert r.status_code == 202

    def settled() -> Any:
        with session_scope() as s:
            return s.execute(text(
                "SELECT d.state, d.last_error FROM deliveries d JOIN events e ON e.id = d.event_pk "
                "WHERE e.event_id = :e AND d.channel = 'sms' AND d.state NOT IN "
                "('pending', 'sending', 'retrying')"), {"e": ev["event_id"]}).first()

    # then the delivery fails with the reason, and the worker is still there
    row = wait_until(settled, timeout_s=180, interval_s=0.5, what="the bomb's delivery to settle")
    assert row.state == "failed" and "characters in total" in row.last_error, tuple(row)
    assert live_client.stack.worker_crashes() == 0
    FIGURES.template_bombs += 1
