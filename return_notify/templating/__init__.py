"""Templating: notifications rendered from the packaged Jinja files and tenant overrides in a
sandbox that counts and bounds the work; filters, languages (i18n), branding, override
scope, storage and validation, the render context built from a stored event, tracked and
rating links with the tenant's switches, and the customer-facing rating page.

A domain package: never imports Celery, FastAPI, Typer or a provider SDK. May import: the
other domain packages, ``storage``, ``observability``, ``core``, ``config``.
"""
