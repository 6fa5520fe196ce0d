"""The demo's sample stream: enough events, returns, tenants and locales, and the awkward cases."""

from __future__ import annotations

from return_notify.devtools.sample_data import make_stream, stamp


def test_sample_stream_meets_the_demo_brief() -> None:
    s = make_stream()
    valid = [e for e in s.events if not e["event_id"].split("-", 1)[-1].startswith("bad")]
    assert len(s.events) >= 2000 and s.returns >= 500
    assert s.duplicates > 0 and s.out_of_order > 0 and s.invalid > 0
    assert {e["milestone"] for e in valid} >= {
        "return_initiated", "return_approved", "label_created", "shipment_dispatched",
        "in_transit", "warehouse_received", "inspection_completed", "restocked",
        "refund_processed", "return_completed", "return_rejected", "return_cancelled",
        "exception"}
    assert len({e["tenant"] for e in s.events}) >= 3
    assert len({e["customer"].get("locale") for e in s.events}) >= 3
    stamped = stamp(s.events)
    assert all("occurred_at" in e for e in stamped)


def test_timeliness_adds_lags_and_scores_without_changing_the_events() -> None:
    from datetime import UTC, datetime

    plain, timed = make_stream(seed=5), make_stream(seed=5, timeliness=True)
    strip = [{k: v for k, v in e.items() if k != "_lag_s"} for e in timed.events]
    for e in strip:
        e["data"] = {k: v for k, v in e["data"].items() if k != "satisfaction"}
    assert strip == plain.events  # the benchmark's stream is the same with or without
    assert plain.scores == {} and plain.lag_profile == {}
    # every return has a profile; only completed returns have a score
    assert set(timed.lag_profile) == {e["return_id"] for e in timed.events}
    completed = {(e["tenant"], e["return_id"]) for e in timed.events
                 if e["milestone"] == "return_completed"}
    assert timed.scores and set(timed.scores) <= completed
    assert timed.surveyed and timed.surveyed <= set(timed.scores)
    # the survey's scores ride on the completion event
    on_events = {(e["tenant"], e["return_id"]): e["data"]["satisfaction"] for e in timed.events
                 if "satisfaction" in e["data"]}
    assert on_events == {k: timed.scores[k] for k in timed.surveyed}
    # stamped: each event happened its lag before publishing, in its return's order
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    stamped = stamp(timed.events, now)
    last: dict[str, datetime] = {}
    seen: set[str] = set()
    for e, raw in zip(stamped, timed.events, strict=True):
        at = datetime.fromisoformat(e["occurred_at"])
        assert "_lag_s" not in e
        if raw["event_id"] in seen or raw.get("_earlier_than_prev"):
            seen.add(raw["event_id"])
            continue  # a duplicate, or out of order on purpose
        seen.add(raw["event_id"])
        assert at > last.get(e["return_id"], datetime.min.replace(tzinfo=UTC))
        last[e["return_id"]] = at
    days = [e for e in stamped if timed.lag_profile[e["return_id"]] == "days"]
    assert all((now - datetime.fromisoformat(e["occurred_at"])).total_seconds() > 86400 * 0.7
               for e in days)


def test_the_customers_prefer_channels_and_the_slow_returns_score_lower() -> None:
    from statistics import mean

    from return_notify.devtools.sample_data import reactions

    s = make_stream(seed=9, min_returns=2000, n_events=0, timeliness=True, response_rate=1.0)
    by_profile: dict[str, list[int]] = {}
    for (_, rid), score in s.scores.items():
        by_profile.setdefault(s.lag_profile[rid], []).append(score)
    means = [mean(by_profile[p]) for p in ("seconds", "minutes", "hours", "days")]
    assert means == sorted(means, reverse=True) and means[0] - means[-1] > 1.0
    units = {(e["tenant"], e["return_id"], e["milestone"], ch) for e in s.events
             for ch in ("email", "sms", "inapp")}
    done = reactions(units, s, seed=1)
    assert done == reactions(units, s, seed=1)  # deterministic

    def rate(milestone: str, channel: str) -> float:
        sent = sum(1 for u in units if u[2:] == (milestone, channel))
        hit = sum(1 for r in done if (r.milestone, r.channel, r.kind) == (
            milestone, channel, "click"))
        return hit / sent

    assert rate("label_created", "sms") > rate("label_created", "email") > rate(
        "label_created", "inapp")
    assert rate("refund_processed", "email") > rate("refund_processed", "sms")
    assert {r.kind for r in done} == {"open", "click", "read", "rate"}
    assert not [r for r in done if r.kind == "open" and r.channel != "email"]
    rated = {(r.tenant, r.return_id) for r in done if r.kind == "rate"}
    assert rated == set(s.scores) - s.surveyed
