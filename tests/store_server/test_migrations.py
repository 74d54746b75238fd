"""Alembic migrations: a fresh database migrated to head has exactly the tables the models
declare (no drift), on SQLite and PostgreSQL; an older database made without migrations is
adopted."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import store_server.models  # noqa: F401  (store tables on the metadata)
from product_db.db import create_tables, make_engine
from store_server.db import current_revision, head_revision, migrate, store_metadata


def test_migrations_build_the_schema_the_models_declare(database_url: str) -> None:
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision()
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        drift = compare_metadata(context, store_metadata())
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


def test_upgrading_a_store_keeps_its_messages_and_scopes_their_ids_to_lanes(
    database_url: str,
) -> None:
    """A store on revision 0003 (message ids global) upgraded to head: every row kept, and a
    second lane may now use a message id the first one used."""
    from alembic import command
    from sqlalchemy import text

    from store_server.db import alembic_config

    engine = make_engine(database_url)
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    now = "2026-11-30 10:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ingested_message (message_id, lane_id, kind, received_at) "
                "VALUES ('lane-1:tx:1', 'lane-1', 'transaction', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO training_sample (message_id, lane_id, transaction_id, track_id, "
                "band, score, reason, image, captured_at, review, received_at) VALUES "
                "('lane-1:sample:1:1', 'lane-1', '1', 1, 'trusted', 0.9, 'honest', "
                "'ab.jpg', :now, 'pending', :now)"
            ),
            {"now": now},
        )
    assert migrate(engine) == head_revision()
    with engine.begin() as connection:
        kept = connection.execute(text("SELECT lane_id, message_id FROM ingested_message"))
        assert kept.all() == [("lane-1", "lane-1:tx:1")]
        connection.execute(
            text(
                "INSERT INTO ingested_message (lane_id, message_id, kind, received_at) "
                "VALUES ('lane-2', 'lane-1:tx:1', 'transaction', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO training_sample (message_id, lane_id, transaction_id, track_id, "
                "band, score, reason, image, captured_at, review, received_at) VALUES "
                "('lane-1:sample:1:1', 'lane-2', '1', 1, 'trusted', 0.9, 'honest', "
                "'ab.jpg', :now, 'pending', :now)"
            ),
            {"now": now},
        )
        assert connection.execute(text("SELECT count(*) FROM training_sample")).scalar() == 2
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, store_metadata()) == []
    engine.dispose()
