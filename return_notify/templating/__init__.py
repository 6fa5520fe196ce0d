"""Templating: notifications rendered from the packaged Jinja files and tenant overrides in a
sandbox that counts and bounds the work; filters, languages (i18n), branding, override
scope, storage and validation, and the render context built from a stored event.

A domain package: never imports Celery, FastAPI, Typer or a provider SDK. May import: the
other domain packages, ``storage``, ``observability``, ``core``, ``config``.
"""
