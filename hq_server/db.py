"""HQ's database: the store schema (console users, sessions, audit log, product catalog; its
own migrations) and HQ's tables, kept by HQ's migrations with their own version table, so the
two chains of revisions never meet."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

import hq_server.models  # noqa: F401  (every HQ table on the metadata)
from store_server.db import alembic_config as store_alembic_config
from store_server.db import migrate as migrate_store_schema

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "hq_alembic_version"


def alembic_config(engine: Engine) -> Config:
    return store_alembic_config(engine, MIGRATIONS)


def migrate(engine: Engine) -> None:
    """Both schemas to their newest revisions."""
    migrate_store_schema(engine)
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
