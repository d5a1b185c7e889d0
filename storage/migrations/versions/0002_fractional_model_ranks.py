"""Model ranks are fractional: tied letter scores share their average rank (2.5), so store floats.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("impression_items") as batch:  # batch mode: SQLite cannot ALTER a column type
        batch.alter_column("pos_rank", type_=sa.Float(), existing_type=sa.Integer(), existing_nullable=True)
        batch.alter_column("neg_rank", type_=sa.Float(), existing_type=sa.Integer(), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("impression_items") as batch:
        batch.alter_column("pos_rank", type_=sa.Integer(), existing_type=sa.Float(), existing_nullable=True)
        batch.alter_column("neg_rank", type_=sa.Integer(), existing_type=sa.Float(), existing_nullable=True)
