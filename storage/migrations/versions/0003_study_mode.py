"""Study mode: study participants (Latin-square row, condition order, progress) and ratings that name
the study, the round and the rated card (rank and item of the impression).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "study_participants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.String(length=64), nullable=False),
        sa.Column("study_version", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_study_participants_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_participants")),
        sa.UniqueConstraint("study_id", "position", name=op.f("uq_study_participants_study_id_position")),
        sa.UniqueConstraint("user_id", name=op.f("uq_study_participants_user_id")),
    )
    with op.batch_alter_table("study_ratings") as batch:  # batch mode: SQLite rebuilds the table
        batch.add_column(sa.Column("study_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("round", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rank", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("item_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_study_ratings_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("study_ratings") as batch:
        batch.drop_index(batch.f("ix_study_ratings_study_id"))
        batch.drop_column("item_id")
        batch.drop_column("rank")
        batch.drop_column("round")
        batch.drop_column("study_id")
    op.drop_table("study_participants")
