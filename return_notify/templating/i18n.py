"""Languages of the notification templates: locale tags, the fallback chain, shared UI strings.

A customer locale is a BCP 47 tag (``de-AT``); templates exist per language (``de``) and,
optionally, per region (``templates/de-AT/...``). The chain tried for a message is
``de-AT`` → ``de`` → the tenant's default locale (tag, then language) → ``en``. Strings the
shared layouts need (greeting, sign-off, footer) live here, per language and tone, so one
layout per channel serves every language. Babel ``Locale`` objects are parsed once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from babel import Locale, UnknownLocaleError

__all__ = [
    "DEFAULT_LANGUAGE", "LANGUAGES", "TONES", "babel_locale", "canonical_locale", "humanized",
    "language_of", "locale_chain", "refund_via_phrase", "ui_strings",
]

DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "es", "fr", "de")
"""Languages with a complete set of default templates."""
TONES = ("friendly", "formal")

_TAG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


@lru_cache(maxsize=1024)
def canonical_locale(tag: str | None) -> str | None:
    """``"de_at"`` → ``"de-AT"``, ``"EN"`` → ``"en"``; ``None`` for empty or malformed tags.

    Only language and region are kept (``"sr-Latn-RS"`` → ``"sr-RS"``): templates and
    overrides are keyed by those two.
    """
    if not tag or not _TAG_RE.fullmatch(tag):
        return None
    parts = re.split(r"[-_]", tag)
    lang = parts[0].lower()
    region = next((p for p in parts[1:] if len(p) == 2 and p.isalpha() or len(p) == 3 and p.isdigit()),
                  None)
    return f"{lang}-{region.upper()}" if region else lang


def language_of(tag: str) -> str:
    """``"de-AT"`` → ``"de"``."""
    return tag.split("-", 1)[0]


@lru_cache(maxsize=1024)
def locale_chain(locale: str | None, tenant_default: str | None = None) -> tuple[str, ...]:
    """Locales to try, most specific first, always ending in ``"en"``, without repeats."""
    chain: list[str] = []
    for tag in (canonical_locale(locale), canonical_locale(tenant_default)):
        if tag:
            chain.extend((tag, language_of(tag)))
    chain.append(DEFAULT_LANGUAGE)
    return tuple(dict.fromkeys(chain))


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """The Babel locale for ``de-AT`` (then ``de``, then ``en`` if Babel has no data)."""
    for candidate in (tag, language_of(tag), DEFAULT_LANGUAGE):
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(DEFAULT_LANGUAGE)


# --------------------------------------------------------------------------- layout strings
# Placeholders: {name}, {tenant}, {url}, {email}, {n}. Plain text: HTML layouts escape them.
# A key ending in .friendly/.formal is chosen by the tenant's tone. "colon" separates a label
# from its value ("Motif : ..." in French).

_UI: dict[str, dict[str, str]] = {
    "en": {
        "rate_question": "How did we do?",
        "rate_prompt": "How satisfied are you with your return? Choose a score:",
        "rate_low": "Not at all satisfied", "rate_high": "Very satisfied",
        "rate_sms": "How did we do? Rate us 1-5:",
        "rate_score": "{n} of 5",
        "greet_name.friendly": "Hi {name},", "greet.friendly": "Hello,",
        "greet_name.formal": "Dear {name},", "greet.formal": "Dear customer,",
        "sign_off.friendly": "Thanks,", "sign_off.formal": "Kind regards,",
        "return_reference": "Return reference", "return_status": "Return status",
        "view_status": "View return status", "questions": "Questions?",
        "help_centre": "Visit our help centre", "visit": "Visit {url}",
        "or_email": "or email {email}", "email_us": "Email us at {email}",
        "receiving": "You're receiving this email because you started a return with {tenant}.",
        "unsubscribe": "Unsubscribe from return updates",
        "more_one": "and 1 more", "more_other": "and {n} more", "item": "Item", "colon": ": ",
    },
    "de": {
        "rate_question": "Wie waren wir?",
        "rate_prompt": "Wie zufrieden sind Sie mit Ihrer Rücksendung? Wählen Sie eine Note:",
        "rate_low": "Gar nicht zufrieden", "rate_high": "Sehr zufrieden",
        "rate_sms": "Wie waren wir? Bewerten Sie uns 1-5:",
        "rate_score": "{n} von 5",
        "greet_name.friendly": "Hallo {name},", "greet.friendly": "Hallo,",
        "greet_name.formal": "Guten Tag {name},", "greet.formal": "Guten Tag,",
        "sign_off.friendly": "Viele Grüße", "sign_off.formal": "Mit freundlichen Grüßen",
        "return_reference": "Rücksendenummer", "return_status": "Status Ihrer Rücksendung",
        "view_status": "Status der Rücksendung ansehen", "questions": "Fragen?",
        "help_centre": "Besuchen Sie unser Hilfe-Center", "visit": "Besuchen Sie {url}",
        "or_email": "oder schreiben Sie an {email}", "email_us": "Schreiben Sie uns an {email}",
        "receiving": "Sie erhalten diese E-Mail, weil Sie bei {tenant} eine Rücksendung "
                     "angemeldet haben.",
        "unsubscribe": "Benachrichtigungen zu Rücksendungen abbestellen",
        "more_one": "und 1 weiterer Artikel", "more_other": "und {n} weitere Artikel",
        "item": "Artikel", "colon": ": ",
    },
    "fr": {
        "rate_question": "Votre avis compte",
        "rate_prompt": "Êtes-vous satisfait(e) de votre retour ? Choisissez une note :",
        "rate_low": "Pas du tout satisfait(e)", "rate_high": "Très satisfait(e)",
        "rate_sms": "Votre avis ? Notez-nous de 1 à 5 :",
        "rate_score": "{n} sur 5",
        "greet_name.friendly": "Bonjour {name},", "greet.friendly": "Bonjour,",
        "greet_name.formal": "Bonjour {name},", "greet.formal": "Madame, Monsieur,",
        "sign_off.friendly": "À bientôt,", "sign_off.formal": "Cordialement,",
        "return_reference": "Référence du retour", "return_status": "Suivi de votre retour",
        "view_status": "Voir le suivi du retour", "questions": "Des questions ?",
        "help_centre": "Consultez notre centre d'aide", "visit": "Consultez {url}",
        "or_email": "ou écrivez-nous à {email}", "email_us": "Écrivez-nous à {email}",
        "receiving": "Vous recevez cet e-mail parce que vous avez demandé un retour "
                     "auprès de {tenant}.",
        "unsubscribe": "Ne plus recevoir les notifications de retour",
        "more_one": "et 1 autre article", "more_other": "et {n} autres articles",
        "item": "Article", "colon": " : ",
    },
    "es": {
        "rate_question": "¿Qué tal lo hemos hecho?",
        "rate_prompt": "¿Estás satisfecho con tu devolución? Elige una puntuación:",
        "rate_low": "Nada satisfecho", "rate_high": "Muy satisfecho",
        "rate_sms": "¿Qué tal lo hemos hecho? Valóranos de 1 a 5:",
        "rate_score": "{n} de 5",
        "greet_name.friendly": "Hola, {name}:", "greet.friendly": "Hola:",
        "greet_name.formal": "Buenos días, {name}:", "greet.formal": "Buenos días:",
        "sign_off.friendly": "¡Gracias!", "sign_off.formal": "Atentamente,",
        "return_reference": "Referencia de la devolución",
        "return_status": "Estado de tu devolución",
        "view_status": "Ver el estado de la devolución", "questions": "¿Tienes alguna pregunta?",
        "help_centre": "Visita nuestro centro de ayuda", "visit": "Visita {url}",
        "or_email": "o escríbenos a {email}", "email_us": "Escríbenos a {email}",
        "receiving": "Recibes este correo porque has iniciado una devolución con {tenant}.",
        "unsubscribe": "Dejar de recibir avisos de devolución",
        "more_one": "y 1 artículo más", "more_other": "y {n} artículos más", "item": "Artículo",
        "colon": ": ",
    },
}


@lru_cache(maxsize=64)
def ui_strings(language: str, tone: str | None = None) -> Mapping[str, str]:
    """Layout strings for ``language`` (English when unknown) in ``tone`` (default friendly):
    keys ``greet_name``, ``greet``, ``sign_off`` plus the tone-independent ones."""
    table = _UI.get(language, _UI[DEFAULT_LANGUAGE])
    tone = tone if tone in TONES else TONES[0]
    out: dict[str, str] = {"lang": language if language in _UI else DEFAULT_LANGUAGE}
    for key, value in table.items():
        base, _, variant = key.partition(".")
        if variant in TONES:
            if variant == tone:
                out[base] = value
        else:
            out[key] = value
    return out  # a plain dict: the sandbox's fast path for `ui.key`; never mutated


# --------------------------------------------------------------------------- codes in data
# Known codes in event data (refund methods, reasons), as a phrase that fits the templates'
# sentences: "We've run into a problem with your return X: <reason>".

_HUMANIZED: dict[str, dict[str, str]] = {
    "en": {
        "original_payment": "original payment method", "store_credit": "store credit",
        "gift_card": "gift card", "bank_transfer": "bank transfer",
        "lost_parcel": "the parcel was lost in transit",
        "label_expired": "the return label expired",
        "inspection_failed": "the items did not pass inspection",
        "damaged_in_transit": "the parcel was damaged in transit",
        "outside_return_window": "the return window has closed",
        "customer_request": "cancelled at your request", "weather_delay": "weather delay",
    },
    "de": {
        "original_payment": "ursprüngliches Zahlungsmittel", "store_credit": "Guthaben",
        "gift_card": "Geschenkkarte", "bank_transfer": "Banküberweisung",
        "lost_parcel": "das Paket ist beim Versand verloren gegangen",
        "label_expired": "das Rücksendeetikett ist abgelaufen",
        "inspection_failed": "die Artikel haben unsere Prüfung nicht bestanden",
        "damaged_in_transit": "das Paket wurde beim Versand beschädigt",
        "outside_return_window": "die Rückgabefrist ist abgelaufen",
        "customer_request": "auf Ihren Wunsch storniert",
        "weather_delay": "wetterbedingte Verzögerung",
    },
    "fr": {
        "original_payment": "moyen de paiement d'origine", "store_credit": "avoir",
        "gift_card": "carte cadeau", "bank_transfer": "virement bancaire",
        "lost_parcel": "le colis a été perdu pendant le transport",
        "label_expired": "l'étiquette de retour a expiré",
        "inspection_failed": "les articles n'ont pas passé notre contrôle",
        "damaged_in_transit": "le colis a été endommagé pendant le transport",
        "outside_return_window": "le délai de retour est dépassé",
        "customer_request": "annulé à votre demande", "weather_delay": "retard dû à la météo",
    },
    "es": {
        "original_payment": "método de pago original", "store_credit": "saldo en tienda",
        "gift_card": "tarjeta regalo", "bank_transfer": "transferencia bancaria",
        "lost_parcel": "el paquete se ha perdido durante el transporte",
        "label_expired": "la etiqueta de devolución ha caducado",
        "inspection_failed": "los artículos no han superado nuestra inspección",
        "damaged_in_transit": "el paquete se ha dañado durante el transporte",
        "outside_return_window": "el plazo de devolución ha finalizado",
        "customer_request": "cancelada a petición tuya",
        "weather_delay": "retraso por mal tiempo",
    },
}
_ALIASES = {"original_payment_method": "original_payment", "parcel_lost": "lost_parcel"}

# "We've refunded €10 <phrase>": the preposition and article depend on the method's gender.
_REFUND_VIA: dict[str, dict[str, str]] = {
    "en": {"original_payment": "to your original payment method",
           "store_credit": "as store credit", "gift_card": "to a gift card",
           "bank_transfer": "by bank transfer", "*": "to your {method}"},
    "de": {"original_payment": "auf Ihr ursprüngliches Zahlungsmittel",
           "store_credit": "als Guthaben in Ihrem Kundenkonto",
           "gift_card": "auf eine Geschenkkarte", "bank_transfer": "per Banküberweisung",
           "*": "per {method}"},
    "fr": {"original_payment": "sur votre moyen de paiement d'origine",
           "store_credit": "sous forme d'avoir", "gift_card": "sur une carte cadeau",
           "bank_transfer": "par virement bancaire", "*": "via {method}"},
    "es": {"original_payment": "en tu método de pago original",
           "store_credit": "como saldo en tienda", "gift_card": "en una tarjeta regalo",
           "bank_transfer": "por transferencia bancaria", "*": "mediante {method}"},
}


def _code(text: str) -> str:
    code = re.sub(r"[\s-]+", "_", text.strip().lower())
    return _ALIASES.get(code, code)


def humanized(text: str, language: str) -> str | None:
    """The phrase for a known code (``"store_credit"``, ``"Label expired"``) or ``None``."""
    table = _HUMANIZED.get(language, _HUMANIZED[DEFAULT_LANGUAGE])
    return table.get(_code(text))


def refund_via_phrase(method: str, language: str, fallback_name: str) -> str:
    """``"store_credit"``, ``"de"`` → ``"als Guthaben in Ihrem Kundenkonto"``."""
    table = _REFUND_VIA.get(language, _REFUND_VIA[DEFAULT_LANGUAGE])
    known = table.get(_code(method))
    return known if known is not None else table["*"].replace("{method}", fallback_name)
