"""Storage: the engine and sessions (one per process, built lazily), the models (one module
per table group in ``models/``), Alembic migrations, tenant lookups (``tenants``) and the one
Redis client factory (``redis``).

May import: ``core``, ``config``, ``events``, ``errors``. Imported by every layer above.
"""
