"""The customer-facing satisfaction page behind ``/rate/{token}``, in the message's language.

No JavaScript: one form with five submit buttons (a ``fieldset`` whose ``legend`` asks the
question; each button's accessible name says the score and, at the ends, what it means).
States: ``ask`` (choose a score), ``confirm`` (a score link opened by something that is not
a person's click: nothing stored, the buttons ask again), ``thanks`` (stored; may still be
changed), ``final`` (stored, no longer changeable), ``invalid`` (bad or unknown link).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from return_notify.templating.filters import css_color, format_date
from return_notify.templating.i18n import DEFAULT_LANGUAGE
from return_notify.templating.links import SCORES
from return_notify.templating.render import TEMPLATE_DIR

__all__ = ["PAGE_STRINGS", "RatingPage", "page_environment", "rating_page"]

State = Literal["ask", "confirm", "thanks", "final", "invalid"]

PAGE_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Rate your return", "ask": "How did we do?",
        "prompt": "How satisfied are you with your return? Choose a score:",
        "about": "Return {return_id} with {tenant}.",
        "low": "Not at all satisfied", "high": "Very satisfied", "score": "{n} of 5",
        "confirm": "You chose {n} of 5. Press it again to send your rating.",
        "thanks": "Thank you!", "saved": "Your rating: {n} of 5.",
        "until": "You can change it until {date}.",
        "final": "Your rating of {n} of 5 is recorded. Thank you for your feedback.",
        "invalid_title": "Link not valid",
        "invalid": "This rating link is not valid or incomplete. Please copy the whole link.",
    },
    "de": {
        "title": "Rücksendung bewerten", "ask": "Wie waren wir?",
        "prompt": "Wie zufrieden sind Sie mit Ihrer Rücksendung? Wählen Sie eine Note:",
        "about": "Rücksendung {return_id} bei {tenant}.",
        "low": "Gar nicht zufrieden", "high": "Sehr zufrieden", "score": "{n} von 5",
        "confirm": "Sie haben {n} von 5 gewählt. Drücken Sie die Note erneut, um sie zu senden.",
        "thanks": "Vielen Dank!", "saved": "Ihre Bewertung: {n} von 5.",
        "until": "Sie können sie bis {date} ändern.",
        "final": "Ihre Bewertung von {n} von 5 ist gespeichert. Danke für Ihr Feedback.",
        "invalid_title": "Link ungültig",
        "invalid": "Dieser Bewertungslink ist ungültig oder unvollständig. Bitte kopieren Sie "
                   "den ganzen Link.",
    },
    "fr": {
        "title": "Évaluez votre retour", "ask": "Votre avis compte",
        "prompt": "Êtes-vous satisfait(e) de votre retour ? Choisissez une note :",
        "about": "Retour {return_id} chez {tenant}.",
        "low": "Pas du tout satisfait(e)", "high": "Très satisfait(e)", "score": "{n} sur 5",
        "confirm": "Vous avez choisi {n} sur 5. Appuyez de nouveau pour envoyer votre note.",
        "thanks": "Merci !", "saved": "Votre note : {n} sur 5.",
        "until": "Vous pouvez la modifier jusqu'au {date}.",
        "final": "Votre note de {n} sur 5 est enregistrée. Merci pour votre avis.",
        "invalid_title": "Lien non valide",
        "invalid": "Ce lien d'évaluation n'est pas valide ou est incomplet. Copiez le lien "
                   "en entier.",
    },
    "es": {
        "title": "Valora tu devolución", "ask": "¿Qué tal lo hemos hecho?",
        "prompt": "¿Estás satisfecho con tu devolución? Elige una puntuación:",
        "about": "Devolución {return_id} con {tenant}.",
        "low": "Nada satisfecho", "high": "Muy satisfecho", "score": "{n} de 5",
        "confirm": "Has elegido {n} de 5. Vuelve a pulsarlo para enviar tu valoración.",
        "thanks": "¡Gracias!", "saved": "Tu valoración: {n} de 5.",
        "until": "Puedes cambiarla hasta el {date}.",
        "final": "Tu valoración de {n} de 5 está registrada. Gracias por tu opinión.",
        "invalid_title": "Enlace no válido",
        "invalid": "Este enlace de valoración no es válido o está incompleto. Copia el enlace "
                   "completo.",
    },
}


@dataclass(frozen=True)
class RatingPage:
    """What the page shows."""

    state: State
    language: str | None = None
    tenant_name: str = ""
    return_id: str = ""
    score: int | None = None
    changeable_until: datetime | None = None
    brand_color: str | None = None
    action: str = ""


def strings(language: str | None) -> Mapping[str, str]:
    return PAGE_STRINGS.get(language or DEFAULT_LANGUAGE, PAGE_STRINGS[DEFAULT_LANGUAGE])


def _labels(t: Mapping[str, str]) -> list[tuple[int, str]]:
    out = []
    for s in SCORES:
        label = t["score"].replace("{n}", str(s))
        if s == SCORES[0]:
            label += " – " + t["low"]
        elif s == SCORES[-1]:
            label += " – " + t["high"]
        out.append((s, label))
    return out


@lru_cache(maxsize=1)
def page_environment() -> Environment:
    """Our own pages (trusted, autoescaped): no sandbox needed, unlike tenant templates."""
    return Environment(loader=FileSystemLoader(str(TEMPLATE_DIR / "pages")), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def rating_page(page: RatingPage) -> str:
    """The page's HTML (autoescaped; every value comes from us or is escaped)."""
    lang = page.language if page.language in PAGE_STRINGS else DEFAULT_LANGUAGE
    t = strings(lang)
    n = str(page.score or "")
    about = t["about"].replace("{return_id}", page.return_id).replace("{tenant}",
                                                                      page.tenant_name)
    if page.state == "invalid":
        heading, lines = t["invalid_title"], [t["invalid"]]
    elif page.state == "thanks":
        lines = [t["saved"].replace("{n}", n)]
        if page.changeable_until is not None:
            lines.append(t["until"].replace("{date}", format_date(page.changeable_until, lang)))
        heading = t["thanks"]
    elif page.state == "final":
        heading, lines = t["thanks"], [t["final"].replace("{n}", n)]
    elif page.state == "confirm":
        heading, lines = t["ask"], [t["confirm"].replace("{n}", n), about]
    else:
        heading, lines = t["ask"], [about]
    form = page.state in ("ask", "confirm") or (page.state == "thanks"
                                                 and page.changeable_until is not None)
    return page_environment().get_template("rating.html.j2").render({
        "lang": lang, "t": t, "title": f"{heading} – {t['title']}" if page.state != "invalid"
        else heading, "heading": heading, "lines": lines, "state": page.state, "form": form,
        "buttons": _labels(t), "chosen": page.score, "action": page.action,
        "brand": css_color(page.brand_color),
    })
