"""The store database's schema, kept by alembic migrations from the first table on.

``migrate`` brings any database to the newest revision at start-up. A database made before
migrations existed (tables created directly, e.g. by `laneguard catalog import`) is recognised
by its tables and stamped (the newest revision when it has every table, else the first), then
upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import store_server.models  # noqa: F401  (every table on the metadata)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"


def store_metadata() -> MetaData:
    """The tables the store schema owns (product_db's and store_server's), apart from other
    tables on SQLModel's shared metadata in this process (HQ's, which its own migrations keep)."""
    owned = MetaData()
    for mapper in SQLModel._sa_registry.mappers:
        table = mapper.local_table
        if mapper.class_.__module__.startswith(("product_db.", "store_server.")):
            assert isinstance(table, Table)
            table.to_metadata(owned)
    return owned


def alembic_config(engine: Engine, migrations: Path = MIGRATIONS) -> Config:
    """Alembic's configuration for ``engine`` and a folder of migrations (HQ has its own)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> str:
    """Upgrade the database behind ``engine`` to the newest revision; return it."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "product" in tables:
            # Made by create_all: as new as the models it was made with, if all are there.
            complete = set(store_metadata().tables) <= tables
            command.stamp(config, "head" if complete else BASELINE)
        command.upgrade(config, "head")
    return head_revision()
