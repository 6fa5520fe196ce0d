"""Access: who may do what. Administrator principals with their roles and scopes (the one
permission check), tenant ingest keys, the one API-key scheme, and the audit log.

A domain package: works on a session the caller owns; never imports Celery, FastAPI, Typer
or a provider SDK. May import: ``storage``, ``observability``, ``core``, ``config``.
"""
