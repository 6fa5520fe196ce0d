"""Policy: whether and when a customer may be messaged: preferences, quiet hours, throttle and
digest (the planner), the suppression list and unsubscribe tokens, and the views of them.

A domain package: works on a session the caller owns; never imports Celery, FastAPI, Typer
or a provider SDK. May import: the other domain packages, ``storage``, ``observability``,
``core``, ``config``.
"""
