"""lane-scoped message ids, audit client address, sign-in throttle, session idle time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 07:07:25.608221
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite reflects the unique constraint 0001 made on training_sample.message_id without a name;
# this names it so batch mode can drop it. PostgreSQL named it itself.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "client",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_seen_at",
                sqlmodel.sql.sqltypes.UTCDateTime(),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )

    # ingested_message: the primary key becomes (lane_id, message_id).
    op.create_table(
        "ingested_message_scoped",
        sa.Column("lane_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lane_id", "message_id"),
    )
    op.execute(
        "INSERT INTO ingested_message_scoped (lane_id, message_id, kind, received_at) "
        "SELECT lane_id, message_id, kind, received_at FROM ingested_message"
    )
    op.drop_table("ingested_message")
    op.rename_table("ingested_message_scoped", "ingested_message")

    # training_sample: message ids unique per lane.
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "training_sample", naming_convention=SQLITE_NAMES if sqlite else None
    ) as batch_op:
        batch_op.drop_constraint(
            "uq_training_sample_message_id" if sqlite else "training_sample_message_id_key",
            type_="unique",
        )
        batch_op.create_unique_constraint(
            "uq_training_sample_lane_id_message_id", ["lane_id", "message_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("training_sample", schema=None) as batch_op:
        batch_op.drop_constraint("uq_training_sample_lane_id_message_id", type_="unique")
        batch_op.create_unique_constraint("uq_training_sample_message_id", ["message_id"])
    op.create_table(
        "ingested_message_global",
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("lane_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.execute(
        "INSERT INTO ingested_message_global (message_id, lane_id, kind, received_at) "
        "SELECT message_id, MIN(lane_id), MIN(kind), MIN(received_at) FROM ingested_message "
        "GROUP BY message_id"
    )
    op.drop_table("ingested_message")
    op.rename_table("ingested_message_global", "ingested_message")
    with op.batch_alter_table("ingested_message", schema=None) as batch_op:
        batch_op.create_index("ix_ingested_message_lane_id", ["lane_id"], unique=False)
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("client")
    op.drop_table("sign_in_throttle")
