"""Thin Celery tasks, one module per queue: deserialise, call the pipeline's plain
functions, record, enqueue. Task names (``return_notify.ingest``, ...) are stable.

An entry point: nothing in the package imports it; it may import every layer below.
"""
