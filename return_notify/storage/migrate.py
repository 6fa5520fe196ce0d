"""Run Alembic migrations programmatically (`return-notify db upgrade`, `db downgrade`)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from return_notify.storage.db import database_url, get_engine

# Serialises concurrent `db upgrade` runs (several containers starting at once).
_LOCK_KEY = 0x52534E  # "RSN"


def alembic_config(url: str | None = None) -> Config:
    ini = files("return_notify.storage").joinpath("alembic.ini")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(files("return_notify.storage").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return cfg


def _run(revision: str, *, down: bool = False) -> str:
    """Migrate under a session-level advisory lock (held across the migrations' own
    transactions: one per migration, so a migration may commit mid-way and run
    ``CREATE INDEX CONCURRENTLY`` or a long validation outside any lock on the tables)."""
    cfg = alembic_config()
    with get_engine().connect() as conn:
        # a migration may rewrite a large table: RSN_DB_STATEMENT_TIMEOUT_MS does not apply
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
        try:
            cfg.attributes["connection"] = conn
            if down:
                command.downgrade(cfg, revision)
            else:
                command.upgrade(cfg, revision)
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            conn.commit()
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
    return row[0] if row else ""


def upgrade(revision: str = "head") -> str:
    """Upgrade the database to ``revision``; returns the revision now current."""
    return _run(revision)


def downgrade(revision: str) -> str:
    """Downgrade the database to ``revision``; returns the revision now current."""
    return _run(revision, down=True)
