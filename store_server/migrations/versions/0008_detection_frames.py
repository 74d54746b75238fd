"""detection frames: camera frames with their boxes, for the detector to learn the store's camera

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detection_frame",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("lane_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("captured_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("boxes", sa.JSON(), nullable=False),
        sa.Column("image", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("review", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lane_id", "message_id"),
    )
    with op.batch_alter_table("detection_frame", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detection_frame_captured_at"), ["captured_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_detection_frame_lane_id"), ["lane_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detection_frame_review"), ["review"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("detection_frame", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_frame_review"))
        batch_op.drop_index(batch_op.f("ix_detection_frame_lane_id"))
        batch_op.drop_index(batch_op.f("ix_detection_frame_captured_at"))

    op.drop_table("detection_frame")
