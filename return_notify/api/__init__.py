"""The HTTP service (``return-notify api``): FastAPI routers and their dependencies only; the
work is done by the layers below. Build the app with ``return_notify.api.app.create_app()``.

An entry point: nothing below imports it.
"""
