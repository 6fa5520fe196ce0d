"""Rules: which channels, template variant and urgency an event gets. ``resolver`` picks the
most specific rule (cached per process); ``store`` changes rules, each change audited.

A domain package: works on a session the caller owns; never imports Celery, FastAPI, Typer
or a provider SDK. May import: the other domain packages, ``storage``, ``observability``,
``core``, ``config``.
"""
