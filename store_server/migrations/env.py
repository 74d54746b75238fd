"""Alembic environment: migrations run on the connection store_server.db.migrate hands over
(or on ``sqlalchemy.url`` when alembic's own command line is used)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import product_db.models  # noqa: F401  (catalog tables)
import store_server.models  # noqa: F401  (store tables)
from product_db.db import make_engine
from store_server.db import store_metadata

target_metadata = store_metadata()


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
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
