"""What a chaos run did, counted exactly: events, deliveries and provider-accepted sends.

``account`` reads PostgreSQL (events, rejected events, deliveries, attempts, inbox items)
and what the local Twilio/SendGrid servers accepted (2xx) per delivery; nothing is sampled.
A duplicate is an accepted send beyond the first of one delivery. It is *explained* when
its delivery was claimed ('sending') at the moment of the fault (the send happened, its
record did not), or when the pipeline recorded one of its calls as a timeout or cut
connection that the provider had in fact accepted (an ambiguous call, retried).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from return_notify.config.rules import channels_for
from return_notify.devtools.sample_data import Stream
from return_notify.events import Milestone

NON_TERMINAL = ("pending", "sending", "retrying", "scheduled")
RECEIVED_STATES = ("sent", "delivered")


@dataclass
class ChaosReport:
    """One scenario's numbers (see the module docstring for what counts as what)."""

    scenario: str
    fault: str
    events_published: int = 0  # including duplicates and invalid ones
    unique_events: int = 0
    events_stored: int = 0
    events_rejected: int = 0
    events_missing: int = 0  # published, unique, neither stored nor rejected
    deliveries: int = 0
    deliveries_expected: int = 0  # the rules' channels of every stored 'notified' event
    deliveries_missing: int = 0
    deliveries_unexpected: int = 0
    states: dict[str, int] = field(default_factory=dict)
    non_terminal: int = 0
    provider_accepted: int = 0  # email + SMS calls the providers answered 2xx
    duplicates: int = 0  # accepted sends beyond the first per delivery (email, SMS)
    duplicates_inapp: int = 0  # inbox items beyond one per delivery
    in_flight_at_fault: int = 0  # deliveries 'sending' just before/after the fault
    duplicates_outside_in_flight: int = 0
    ambiguous_calls: int = 0  # accepted calls the pipeline recorded as timeout/connection error
    unexplained_duplicates: int = 0  # neither in flight at the fault nor an ambiguous call
    sent_max_per_delivery: int = 0  # 'sent' attempt rows of one delivery (the pipeline's view)
    recorded_sent_not_received: int = 0  # state sent, provider/inbox has nothing: lost
    received_not_recorded_sent: int = 0  # provider has it, state failed/dead/skipped
    fault_at_s: float = 0.0  # after the first publish
    fault_duration_s: float = 0.0
    recovery_s: float = 0.0  # end of the fault -> every delivery terminal
    elapsed_s: float = 0.0  # first publish -> every delivery terminal
    deliveries_per_s: float = 0.0
    workers_alive: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing lost, everything terminal, every duplicate explained."""
        return not (self.events_missing or self.non_terminal or self.deliveries_missing
                    or self.deliveries_unexpected or self.recorded_sent_not_received
                    or self.unexplained_duplicates or self.duplicates_inapp
                    or self.sent_max_per_delivery > 1)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def account(conn: Connection, scenario: str, fault: str, stream: Stream,
            accepted: Counter[tuple[str, int]], in_flight: set[int]) -> ChaosReport:
    """Count everything, given the run's database, its published stream, what the providers
    accepted per ``(channel, delivery id)`` and the deliveries in flight at the fault."""
    r = ChaosReport(scenario, fault)
    r.events_published, r.unique_events = len(stream.events), stream.unique_valid + stream.invalid
    bad = {e["event_id"] for e in stream.events if e["event_id"].split("-", 1)[-1].startswith("bad-")}
    published = {(e["tenant"], e["event_id"]) for e in stream.events if e["event_id"] not in bad}
    events = conn.execute(text("SELECT e.id, t.slug, e.event_id, e.milestone, e.disposition, "
                               "e.payload FROM events e JOIN tenants t ON t.id = e.tenant_id")).all()
    rejected = set(conn.execute(text("SELECT DISTINCT event_id FROM rejected_events")).scalars())
    r.events_stored, r.events_rejected = len(events), len(rejected & bad)
    r.events_missing = len(published - {(e[1], e[2]) for e in events}) + len(bad - rejected)

    deliveries = conn.execute(text("SELECT id, event_pk, channel, state FROM deliveries")).all()
    by_event: dict[int, set[str]] = {}
    for _, epk, ch, _ in deliveries:
        by_event.setdefault(epk, set()).add(ch)
    for epk, _, _, milestone, disposition, payload in events:
        cust = payload.get("customer", {})
        want = set(channels_for(Milestone(milestone), "email" in cust, "phone" in cust)
                   if disposition == "notified" else ())
        have = by_event.get(epk, set())
        r.deliveries_expected += len(want)
        r.deliveries_missing += len(want - have)
        r.deliveries_unexpected += len(have - want)
    r.deliveries, r.states = len(deliveries), dict(Counter(d[3] for d in deliveries))
    r.non_terminal = sum(n for s, n in r.states.items() if s in NON_TERMINAL)

    inbox: dict[int, int] = {did: n for did, n in conn.execute(
        text("SELECT delivery_id, count(*) FROM inbox_items GROUP BY 1"))}
    attempts: dict[int, Counter[str]] = {}
    for did, outcome, code, n in conn.execute(text(
            "SELECT delivery_id, outcome, coalesce(error_code, ''), count(*) "
            "FROM delivery_attempts GROUP BY 1, 2, 3")):
        kind = "sent" if outcome == "sent" else "ambiguous" if code == "connection" else "other"
        attempts.setdefault(did, Counter())[kind] += n
    r.provider_accepted, r.in_flight_at_fault = sum(accepted.values()), len(in_flight)
    for did, _, ch, state in deliveries:
        got = inbox.get(did, 0) if ch == "inapp" else accepted.get((ch, did), 0)
        seen = attempts.get(did, Counter())
        r.sent_max_per_delivery = max(r.sent_max_per_delivery, seen["sent"])
        if ch == "inapp":
            r.duplicates_inapp += max(0, got - 1)
        else:
            extra, unknown = max(0, got - 1), max(0, got - seen["sent"])
            r.duplicates += extra
            r.ambiguous_calls += min(unknown, seen["ambiguous"])
            if did not in in_flight:
                r.duplicates_outside_in_flight += extra
                r.unexplained_duplicates += min(extra, max(0, unknown - seen["ambiguous"]))
        r.recorded_sent_not_received += state in RECEIVED_STATES and got == 0
        r.received_not_recorded_sent += state not in RECEIVED_STATES and got > 0
    return r


COLUMNS = ("scenario", "events_published", "deliveries", "elapsed_s", "recovery_s",
           "duplicates", "in_flight_at_fault", "ambiguous_calls", "non_terminal", "ok")


def table(reports: Sequence[ChaosReport], header: bool = True) -> str:
    """Fixed-width rows of the main numbers, one per scenario."""
    rows = [[str(rep.to_json()[c]) for c in COLUMNS] for rep in reports]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
              for i, c in enumerate(COLUMNS)]
    lines = ([list(COLUMNS)] if header else []) + rows
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True))
                     for line in lines)
