"""The customer-facing status page of a return behind ``/s/{token}`` (the default
call-to-action and "View status" link of every message), in the message's language.

It shows what the customer's own messages said, no more: the retailer, the return reference,
the return's current milestone and the milestones it went through, with their dates in the
tenant's timezone. Milestone headlines are the packaged in-app titles rendered without the
event's data (no amounts, addresses or names). States: ``status`` (the return is known),
``unknown`` (no such return any more, e.g. erased), ``invalid`` (a bad link) and ``legacy``
(an unsealed ``/r/{tenant}/{return_id}`` link from a message sent without
``RSN_LINK_SECRET``: it cannot prove the reader holds a message of that return, so it shows
no status, only where to find it). No JavaScript, no cookies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from return_notify.templating.context import build_context
from return_notify.templating.filters import css_color, format_datetime
from return_notify.templating.i18n import DEFAULT_LANGUAGE
from return_notify.templating.pages import page_environment
from return_notify.templating.render import TemplateRenderError, render

__all__ = ["STATUS_STRINGS", "StatusPage", "Step", "milestone_title", "status_page"]

State = Literal["status", "unknown", "invalid", "legacy"]

STATUS_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Return status", "about": "Return {return_id} with {tenant}.",
        "history": "Progress", "updated": "Last update: {date}.",
        "unknown_title": "Return not found",
        "unknown": "We have no status for this return. Please contact {tenant}.",
        "invalid_title": "Link not valid",
        "invalid": "This status link is not valid or incomplete. Please copy the whole link.",
        "legacy": "The current status of this return is in your latest message from {tenant}.",
        "support": "Help from {tenant}:",
    },
    "de": {
        "title": "Status der Rücksendung", "about": "Rücksendung {return_id} bei {tenant}.",
        "history": "Verlauf", "updated": "Letzte Aktualisierung: {date}.",
        "unknown_title": "Rücksendung nicht gefunden",
        "unknown": "Für diese Rücksendung liegt kein Status vor. Bitte wenden Sie sich an "
                   "{tenant}.",
        "invalid_title": "Link ungültig",
        "invalid": "Dieser Statuslink ist ungültig oder unvollständig. Bitte kopieren Sie den "
                   "ganzen Link.",
        "legacy": "Den aktuellen Status dieser Rücksendung finden Sie in Ihrer letzten "
                  "Nachricht von {tenant}.",
        "support": "Hilfe von {tenant}:",
    },
    "fr": {
        "title": "Suivi du retour", "about": "Retour {return_id} chez {tenant}.",
        "history": "Étapes", "updated": "Dernière mise à jour : {date}.",
        "unknown_title": "Retour introuvable",
        "unknown": "Nous n'avons pas de statut pour ce retour. Contactez {tenant}.",
        "invalid_title": "Lien non valide",
        "invalid": "Ce lien de suivi n'est pas valide ou est incomplet. Copiez le lien en "
                   "entier.",
        "legacy": "Le statut actuel de ce retour figure dans votre dernier message de "
                  "{tenant}.",
        "support": "Aide de {tenant} :",
    },
    "es": {
        "title": "Estado de la devolución", "about": "Devolución {return_id} con {tenant}.",
        "history": "Progreso", "updated": "Última actualización: {date}.",
        "unknown_title": "Devolución no encontrada",
        "unknown": "No tenemos el estado de esta devolución. Ponte en contacto con {tenant}.",
        "invalid_title": "Enlace no válido",
        "invalid": "Este enlace de seguimiento no es válido o está incompleto. Copia el "
                   "enlace completo.",
        "legacy": "El estado actual de esta devolución está en tu último mensaje de {tenant}.",
        "support": "Ayuda de {tenant}:",
    },
}


@dataclass(frozen=True)
class Step:
    """One milestone the return went through."""

    milestone: str
    at: datetime


@dataclass(frozen=True)
class StatusPage:
    """What the page shows (``steps`` oldest first; ``current`` the return's milestone, the
    headline when there are no steps)."""

    state: State
    language: str | None = None
    tenant_name: str = ""
    return_id: str = ""
    current: str | None = None
    steps: tuple[Step, ...] = field(default_factory=tuple)
    timezone: str | None = None
    brand_color: str | None = None
    support_url: str | None = None
    support_email: str | None = None


def strings(language: str | None) -> Mapping[str, str]:
    return STATUS_STRINGS.get(language or DEFAULT_LANGUAGE, STATUS_STRINGS[DEFAULT_LANGUAGE])


@lru_cache(maxsize=256)
def milestone_title(milestone: str, language: str) -> str:
    """The packaged in-app headline of ``milestone`` in ``language``, rendered without the
    event's data (the milestone's name when it has none)."""
    ctx = build_context({"milestone": milestone, "return_id": "-", "data": {},
                         "occurred_at": datetime(2000, 1, 1, tzinfo=UTC)}, "-", None,
                        "https://localhost")
    try:
        return render("inapp", milestone, ctx, locale=language).subject or milestone
    except TemplateRenderError:
        return milestone.replace("_", " ").capitalize()


def _fill(text: str, page: StatusPage) -> str:
    return text.replace("{return_id}", page.return_id).replace("{tenant}", page.tenant_name)


def status_page(page: StatusPage) -> str:
    """The page's HTML (autoescaped; every value comes from us or is escaped)."""
    lang = page.language if page.language in STATUS_STRINGS else DEFAULT_LANGUAGE
    t = strings(lang)
    steps: list[tuple[str, str]] = []
    lines: list[str] = []
    if page.state == "invalid":
        heading, lines = t["invalid_title"], [t["invalid"]]
    elif page.state == "unknown":
        heading, lines = t["unknown_title"], [_fill(t["unknown"], page)]
    elif page.state == "legacy":
        heading, lines = t["title"], [_fill(t["about"], page), _fill(t["legacy"], page)]
    else:
        # the latest step (an exception too), else the return's milestone
        current = page.steps[-1].milestone if page.steps else page.current
        heading = milestone_title(current, lang) if current else t["title"]
        lines = [_fill(t["about"], page)]
        for step in page.steps:  # two milestones may read the same (de: dispatched, in
            # transit): one line, the later date
            line = (milestone_title(step.milestone, lang),
                    format_datetime(step.at, lang, page.timezone))
            if steps and steps[-1][0] == line[0]:
                steps[-1] = line
            else:
                steps.append(line)
        if page.steps:
            lines.append(t["updated"].replace(
                "{date}", format_datetime(page.steps[-1].at, lang, page.timezone)))
    support = page.state != "invalid" and bool(page.support_url or page.support_email)
    return page_environment().get_template("status.html.j2").render({
        "lang": lang, "t": t, "title": heading if page.state != "status"
        else f"{heading} – {t['title']}", "heading": heading, "lines": lines, "steps": steps,
        "brand": css_color(page.brand_color), "support": support,
        "support_label": _fill(t["support"], page), "support_url": page.support_url,
        "support_email": page.support_email,
    })
