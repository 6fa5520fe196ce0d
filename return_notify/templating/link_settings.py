"""A tenant's insights switches: engagement tracking and the satisfaction survey.

* ``tracking`` (off by default): SMS links go through ``/r/{token}``, the in-app inbox hands
  out ``/r/`` links, and opens and clicks (SendGrid's, ours) are recorded. Off: nothing is
  rewritten and nothing is recorded, including for messages sent while it was on.
* ``survey`` (off by default): the notification of each ``survey_milestones`` milestone
  (``return_completed``; ``refund_processed`` too when configured) carries a one-click
  rating. A rating is an answer the customer chooses to give, not tracking: it does not
  depend on ``tracking``.

Both only take effect when ``RSN_LINK_SECRET`` is set. Every change is audited (resource
``insights``) and bumps the tenant's template revision, so workers render with the new
switches from their next batch on (``template_store``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.storage.models import SURVEY_MILESTONES
from return_notify.templating.branding import bump_revision

__all__ = ["DEFAULT_SURVEY_MILESTONES", "InsightsSettings", "get_insights", "load_insights",
           "save_insights"]

DEFAULT_SURVEY_MILESTONES = ("return_completed",)


class InsightsSettings(BaseModel):
    """A tenant's switches (CLI ``insights settings``); every field has a privacy-first
    default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking: bool = Field(default=False, description="Record opens and clicks")
    survey: bool = Field(default=False, description="Ask for a 1-5 rating in final messages")
    survey_milestones: tuple[str, ...] = Field(
        default=DEFAULT_SURVEY_MILESTONES,
        description=f"Milestones whose message asks for the rating: {', '.join(SURVEY_MILESTONES)}")

    @field_validator("survey_milestones", mode="before")
    @classmethod
    def _milestones(cls, v: Any) -> tuple[str, ...]:
        items = [v] if isinstance(v, str) else list(v or ())
        out: list[str] = []
        for item in items:
            for m in str(item).split(","):
                m = m.strip().lower()
                if not m:
                    continue
                if m not in SURVEY_MILESTONES:
                    raise ValueError(f"{m!r} cannot carry the rating: use "
                                     f"{' or '.join(SURVEY_MILESTONES)}")
                if m not in out:
                    out.append(m)
        if not out:
            raise ValueError("name at least one milestone")
        return tuple(out)

    def rated_milestones(self) -> frozenset[str]:
        """The milestones whose messages carry the rating (none when the survey is off)."""
        return frozenset(self.survey_milestones) if self.survey else frozenset()


_SELECT = text("SELECT tenant_id, tracking, survey, survey_milestones FROM tenant_insights "
               "WHERE tenant_id = ANY(CAST(:ids AS int[]))")
_UPSERT = text("""
INSERT INTO tenant_insights (tenant_id, tracking, tracking_since, survey, survey_milestones,
                             updated_by)
VALUES (:t, :tracking, CASE WHEN :tracking THEN now() END, :survey, CAST(:ms AS varchar[]),
        :actor)
ON CONFLICT (tenant_id) DO UPDATE SET tracking = EXCLUDED.tracking,
    tracking_since = CASE WHEN NOT EXCLUDED.tracking THEN NULL
                          WHEN tenant_insights.tracking THEN tenant_insights.tracking_since
                          ELSE now() END,
    survey = EXCLUDED.survey, survey_milestones = EXCLUDED.survey_milestones,
    updated_by = EXCLUDED.updated_by, updated_at = now()
""")


def load_insights(session: Session, tenant_ids: Iterable[int]) -> dict[int, InsightsSettings]:
    """The switches of these tenants, in one query (defaults for tenants without a row)."""
    ids = sorted(set(tenant_ids))
    out = {tid: InsightsSettings() for tid in ids}
    if ids:
        for tid, tracking, survey, milestones in session.execute(_SELECT, {"ids": ids}):
            out[int(tid)] = InsightsSettings(tracking=tracking, survey=survey,
                                             survey_milestones=tuple(milestones))
    return out


def get_insights(session: Session, tenant_id: int) -> InsightsSettings:
    return load_insights(session, [tenant_id])[tenant_id]


def save_insights(session: Session, tenant_id: int, new: InsightsSettings,
                  actor: Actor) -> InsightsSettings:
    """Store the tenant's switches (audited as ``insights.update``; the caller commits).
    A change that changes nothing writes nothing."""
    old = get_insights(session, tenant_id)
    if new == old:
        return old
    session.execute(_UPSERT, {"t": tenant_id, "tracking": new.tracking, "survey": new.survey,
                              "ms": list(new.survey_milestones), "actor": actor.name[:128]})
    bump_revision(session, tenant_id)  # workers pick the switches up on their next batch
    record(session, tenant_id, actor, "insights.update", "insights", None,
           before=old.model_dump(mode="json"), after=new.model_dump(mode="json"))
    return new
