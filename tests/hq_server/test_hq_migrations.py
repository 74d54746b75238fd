"""HQ's database: the store schema's migrations and HQ's own (their own version table) build
exactly the tables both packages declare, on SQLite and PostgreSQL, and a second start changes
nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import hq_server.models  # noqa: F401  (HQ tables on the metadata)
from hq_server.db import VERSION_TABLE, migrate
from product_db.db import make_engine


def test_hq_migrations_build_the_schema_both_packages_declare(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        drift = [
            d
            for d in compare_metadata(context, SQLModel.metadata)
            if not (d[0] == "remove_table" and d[1].name in ("alembic_version", VERSION_TABLE))
        ]
        tables = set(inspect(connection).get_table_names())
    assert drift == [], f"models and migrations differ: {drift}"
    assert {"hq_store", "hq_sample", "console_user", "product", VERSION_TABLE} <= tables
    engine.dispose()
