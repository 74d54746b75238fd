"""Alembic environment for HQ's own tables: its own version table, and only the tables
``hq_server.models`` defines (the store schema beside them has its own migrations)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import hq_server.models  # noqa: F401  (HQ tables)
from hq_server.db import VERSION_TABLE
from hq_server.models import HQ_TABLES
from product_db.db import make_engine

target_metadata = SQLModel.metadata


def _hq_only(obj: Any, name: str | None, type_: str, _reflected: bool, _compare: Any) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", None)
    return table_name in HQ_TABLES


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_object=_hq_only,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
