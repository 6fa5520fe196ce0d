"""The HTTP service (``return-notify api``): ingest, returns, inbox, webhooks, unsubscribe.

Build the app with ``return_notify.api.app.create_app()``. This package's ``__init__`` and
``settings`` import nothing web-related, so workers can read the API settings cheaply.
"""
