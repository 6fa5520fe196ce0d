"""The Celery worker side: the app (``celery -A return_notify.workers.app``), queue routing
helpers, process start-up hooks and the signals that wire logs and metrics.

An entry point: nothing below imports it.
"""
