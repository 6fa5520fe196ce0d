"""Channels: one module per provider behind the small ``Channel`` interface (``base``), the
circuit breaker and failover chain, the registry that builds them from settings, and
``fakes/``: local servers speaking the providers' real APIs.

May import: the domain, ``storage``, ``observability``, ``core``, ``config`` and the provider
SDKs; never ``pipeline``, ``api``, ``tasks``, ``workers`` or ``cli``.
"""
