"""Observability: logs (JSON lines, ids on every line, masking) and Prometheus metrics of the
workers and the API. Imports no Celery: ``workers/signals.py`` connects the Celery hooks.

May import: ``core``, ``config``, ``storage`` (for the Redis client), ``events``, ``errors``.
"""
