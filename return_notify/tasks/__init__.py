"""Thin Celery tasks: deserialise, call the pipeline's plain functions, record, enqueue."""
