"""Database engines for the catalog (and, later, the store server's tables).

SQLite is the embedded default: a file in the store's data folder, WAL mode so readers never
block the writer. PostgreSQL is used by URL when a store outgrows it. Both get the same tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel, create_engine

from product_db import models  # noqa: F401  (registers the catalog tables on SQLModel.metadata)

DEFAULT_DATABASE_URL = "sqlite:///data/laneguard.sqlite3"


def database_url_from_env() -> str:
    """``LANEGUARD_DATABASE_URL`` or the embedded SQLite file in ./data."""
    return os.environ.get("LANEGUARD_DATABASE_URL", DEFAULT_DATABASE_URL)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
    dbapi_connection.isolation_level = None  # transactions begin in _begin_immediate


def _begin_immediate(connection: Any) -> None:
    """Every transaction takes SQLite's write lock when it begins. A transaction that read
    first and wrote later would fail at once with "database is locked" whenever another
    connection committed in between (its snapshot is stale; SQLite does not wait then).
    Taken at the start, the lock is waited for (busy_timeout) instead. Readers of other
    connections are never blocked (WAL); transactions here are short."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite files get their folder created and WAL switched on.

    PostgreSQL URLs written as ``postgresql://`` use the psycopg 3 driver the project installs.
    """
    parsed = make_url(url or database_url_from_env())
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def create_tables(engine: Engine) -> None:
    """Create every table registered on SQLModel.metadata that does not exist yet."""
    SQLModel.metadata.create_all(engine)
