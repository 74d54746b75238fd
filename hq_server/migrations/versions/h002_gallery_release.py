"""Chain gallery entries are held until a second store agrees or a person confirms them

Revision ID: h002
Revises: h001
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "h002"
down_revision: str | None = "h001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hq_gallery_entry", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("released_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_hq_gallery_entry_released_at"), ["released_at"], unique=False
        )
    # Entries from before the rule went to every store when they arrived.
    op.execute(
        "UPDATE hq_gallery_entry SET released_at = added_at, released_by = 'before-agreement'"
    )


def downgrade() -> None:
    with op.batch_alter_table("hq_gallery_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hq_gallery_entry_released_at"))
        batch_op.drop_column("released_by")
        batch_op.drop_column("released_at")
