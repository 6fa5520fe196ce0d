"""Changing notification rules: create, update, disable, delete, each audited in the same
transaction, and the resolver cache of this process invalidated (now and after commit).

Permission checks are the caller's (``principals.authorize``); this module only stores.
A rule's scope (milestone, region, category) is its identity and never changes: to move a
rule, create the new one and delete the old.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.core.regions import normalize_category, normalize_region
from return_notify.events import Milestone
from return_notify.rules.resolver import (
    invalidate,
    validate_channels,
    validate_override,
    validate_template,
    validate_urgency,
)
from return_notify.storage.models import NotificationRule

MUTABLE = ("channels", "template", "urgency", "enabled", "override_opt_out")


class RuleError(Exception):
    """Base of the errors below; the message is meant for the person making the change."""


class RuleNotFound(RuleError):
    pass


class RuleConflict(RuleError):
    def __init__(self, message: str, existing_id: int | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


@dataclass(frozen=True)
class RuleSpec:
    """A validated, normalised new rule."""

    milestone: Milestone
    channels: tuple[str, ...]
    region: str | None = None
    category: str | None = None
    template: str | None = None
    urgency: str | None = None
    enabled: bool = True
    override_opt_out: bool = False

    def __post_init__(self) -> None:
        # however the spec was made (``build`` or the admin API), never an informational
        # rule that overrides opt-outs
        validate_override(self.milestone, self.urgency, self.override_opt_out)

    @classmethod
    def build(cls, milestone: str, channels: Iterable[str], region: str | None = None,
              category: str | None = None, template: str | None = None,
              urgency: str | None = None, enabled: bool = True,
              override_opt_out: bool = False) -> RuleSpec:
        """Validate and normalise; raises ``ValueError`` with a message for people."""
        try:
            m = Milestone(milestone)
        except ValueError:
            raise ValueError(f"unknown milestone {milestone!r}: use "
                             f"{', '.join(x.value for x in Milestone)}") from None
        return cls(m, validate_channels(channels), normalize_region(region),
                   normalize_category(category), validate_template(template),
                   validate_urgency(urgency), bool(enabled), bool(override_opt_out))


def rule_dict(r: NotificationRule) -> dict[str, Any]:
    """A rule as the API, the CLI and audit entries show it."""
    return {"id": r.id, "milestone": r.milestone, "region": r.region,
            "category": r.product_category, "channels": list(r.channels),
            "template": r.template, "urgency": r.urgency, "enabled": r.enabled,
            "override_opt_out": r.override_opt_out, "version": r.version,
            "created_at": r.created_at, "updated_at": r.updated_at,
            "created_by": r.created_by, "updated_by": r.updated_by}


def _snapshot(r: NotificationRule) -> dict[str, Any]:
    d = rule_dict(r)
    for k in ("created_at", "updated_at", "created_by", "updated_by"):
        d.pop(k)
    return d


def _after_commit(session: Session) -> None:
    for tenant_id in session.info.pop("rsn_rules_changed", set()):
        invalidate(tenant_id)


def _changed(session: Session, tenant_id: int) -> None:
    invalidate(tenant_id)
    if not session.info.get("rsn_rules_hooked"):
        event.listen(session, "after_commit", _after_commit)
        session.info["rsn_rules_hooked"] = True
    session.info.setdefault("rsn_rules_changed", set()).add(tenant_id)


def list_rules(session: Session, tenant_id: int, milestone: str | None = None
               ) -> list[NotificationRule]:
    stmt = select(NotificationRule).where(NotificationRule.tenant_id == tenant_id)
    if milestone is not None:
        stmt = stmt.where(NotificationRule.milestone == milestone)
    return list(session.execute(stmt.order_by(
        NotificationRule.milestone, NotificationRule.region.nulls_first(),
        NotificationRule.product_category.nulls_first(), NotificationRule.id)).scalars())


def get_rule(session: Session, tenant_id: int, rule_id: int, *, for_update: bool = False
             ) -> NotificationRule | None:
    stmt = select(NotificationRule).where(NotificationRule.tenant_id == tenant_id,
                                          NotificationRule.id == rule_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar()


def _find_scope(session: Session, tenant_id: int, spec: RuleSpec) -> int | None:
    return session.execute(select(NotificationRule.id).where(
        NotificationRule.tenant_id == tenant_id,
        NotificationRule.milestone == spec.milestone.value,
        func.coalesce(NotificationRule.region, "") == (spec.region or ""),
        func.coalesce(NotificationRule.product_category, "") == (spec.category or ""),
    )).scalar()


def create_rule(session: Session, tenant_id: int, spec: RuleSpec, actor: Actor, *,
                action: str = "rule.create") -> NotificationRule:
    """Insert a rule; ``RuleConflict`` if its scope already has one (update that instead).
    ``action`` names the audit entry (``rule.apply_recommendation`` from the insights)."""
    row = NotificationRule(
        tenant_id=tenant_id, milestone=spec.milestone.value, region=spec.region,
        product_category=spec.category, channels=list(spec.channels), template=spec.template,
        urgency=spec.urgency, enabled=spec.enabled, override_opt_out=spec.override_opt_out,
        created_by=actor.name, updated_by=actor.name)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = _find_scope(session, tenant_id, spec)
        raise RuleConflict(f"rule {existing} already covers this scope; update it instead",
                           existing) from None
    session.refresh(row)
    record(session, tenant_id, actor, action, "rules", row.id, region=row.region,
           category=row.product_category, after=_snapshot(row))
    _changed(session, tenant_id)
    return row


def update_rule(session: Session, tenant_id: int, rule_id: int, changes: dict[str, Any],
                actor: Actor, *, expected_version: int | None = None,
                action: str = "rule.update") -> NotificationRule:
    """Change ``channels``, ``template``, ``urgency``, ``enabled`` and/or ``override_opt_out``.

    ``override_opt_out`` must hold for the rule as changed: ``ValueError`` when the rule
    would override opt-outs without being transactional (e.g. urgency set to informational).
    ``expected_version`` (optimistic concurrency): ``RuleConflict`` if the rule changed since.
    """
    unknown = set(changes) - set(MUTABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}: only "
                         f"{', '.join(MUTABLE)} (a rule's scope is its identity)")
    clean: dict[str, Any] = {}
    if "channels" in changes:
        clean["channels"] = list(validate_channels(changes["channels"] or ()))
    if "template" in changes:
        clean["template"] = validate_template(changes["template"])
    if "urgency" in changes:
        clean["urgency"] = validate_urgency(changes["urgency"])
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            raise ValueError("enabled: true or false")
        clean["enabled"] = changes["enabled"]
    if "override_opt_out" in changes:
        if not isinstance(changes["override_opt_out"], bool):
            raise ValueError("override_opt_out: true or false")
        clean["override_opt_out"] = changes["override_opt_out"]
    row = get_rule(session, tenant_id, rule_id, for_update=True)
    if row is None:
        raise RuleNotFound(f"no rule {rule_id}")
    if expected_version is not None and row.version != expected_version:
        raise RuleConflict(f"rule {rule_id} is at version {row.version}, not {expected_version}: "
                           "reload it and retry", rule_id)
    validate_override(row.milestone, clean.get("urgency", row.urgency),
                      clean.get("override_opt_out", row.override_opt_out))
    before = _snapshot(row)
    if all(getattr(row, k) == v for k, v in clean.items()):
        return row  # nothing changes: no new version, no audit entry
    for k, v in clean.items():
        setattr(row, k, v)
    row.version = row.version + 1
    row.updated_by = actor.name
    row.updated_at = session.execute(select(func.now())).scalar_one()
    session.flush()
    record(session, tenant_id, actor, action, "rules", row.id, region=row.region,
           category=row.product_category, before=before, after=_snapshot(row))
    _changed(session, tenant_id)
    return row


def disable_rule(session: Session, tenant_id: int, rule_id: int, actor: Actor
                 ) -> NotificationRule:
    """Disable: the rule's scope is then notified on no channel (see ``rules``)."""
    return update_rule(session, tenant_id, rule_id, {"enabled": False}, actor,
                       action="rule.disable")


def delete_rule(session: Session, tenant_id: int, rule_id: int, actor: Actor) -> dict[str, Any]:
    """Remove a rule: its scope falls back to the next less specific rule or the default."""
    row = get_rule(session, tenant_id, rule_id, for_update=True)
    if row is None:
        raise RuleNotFound(f"no rule {rule_id}")
    gone = rule_dict(row)
    record(session, tenant_id, actor, "rule.delete", "rules", row.id, region=row.region,
           category=row.product_category, before=_snapshot(row))
    session.delete(row)
    session.flush()
    _changed(session, tenant_id)
    return gone
