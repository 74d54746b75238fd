"""Alembic migrations: a fresh database migrated to head has exactly the tables the models
declare (no drift), on SQLite and PostgreSQL; an older database made without migrations is
adopted."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import store_server.models  # noqa: F401  (store tables on the metadata)
from product_db.db import create_tables, make_engine
from store_server.db import current_revision, head_revision, migrate


def test_migrations_build_the_schema_the_models_declare(database_url: str) -> None:
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision()
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        drift = compare_metadata(context, SQLModel.metadata)
    assert drift == [], f"models and migrations differ: {drift}"
    assert migrate(engine) == head_revision()  # a second start changes nothing
    engine.dispose()


def test_a_database_made_before_migrations_is_adopted(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old.sqlite3")
    create_tables(engine)  # what `laneguard catalog import` does on a new file
    migrate(engine)
    assert current_revision(engine) == head_revision()
    assert "console_user" in inspect(engine).get_table_names()
    engine.dispose()
