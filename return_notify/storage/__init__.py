"""Storage: SQLAlchemy 2 models, engine/session per process, Alembic migrations."""
