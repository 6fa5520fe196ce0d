"""Celery worker side: the app, queue routing helpers and process start-up hooks."""
