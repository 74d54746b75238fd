"""alert clips, the recogniser's guesses, the teacher's proposals, evidence retention

Existing alerts are not kept and have deleted nothing; existing samples wait for the teacher.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:16:23.380177
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_clip",
        sa.Column("lane_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("alert_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("media", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lane_id", "alert_id"),
    )
    with op.batch_alter_table("alert_clip", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_clip_received_at"), ["received_at"], unique=False
        )

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guesses", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("keep_evidence", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("evidence_deleted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )

    with op.batch_alter_table("training_sample", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("teacher_checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("proposals", sa.JSON(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_training_sample_teacher_checked_at"),
            ["teacher_checked_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("training_sample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_sample_teacher_checked_at"))
        batch_op.drop_column("proposals")
        batch_op.drop_column("teacher_checked_at")

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("evidence_deleted_at")
        batch_op.drop_column("keep_evidence")
        batch_op.drop_column("guesses")

    with op.batch_alter_table("alert_clip", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_clip_received_at"))

    op.drop_table("alert_clip")
