"""detection frames: when the frame teacher judged each frame's "of interest" boxes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("detection_frame", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("teacher_checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_detection_frame_teacher_checked_at"),
            ["teacher_checked_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("detection_frame", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_frame_teacher_checked_at"))
        batch_op.drop_column("teacher_checked_at")
