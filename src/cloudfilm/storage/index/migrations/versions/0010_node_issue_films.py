"""nodes that issue a cloud film for each stable study of their hospital (issue 12)

``nodes.issue_films_since``: null = off; else studies of the node's issuer that arrive
from then on get a film once stable. ``auto_films``: one row per study the watcher took
(unique ``study_uid``: two ``serve`` processes never both issue one), with the film it
became. ``ix_studies_created_at`` keeps the watcher's look at recent studies a range
scan.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issue_films_since", sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        "auto_films",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("film_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_uid"),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_created_at"))
    op.drop_table("auto_films")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("issue_films_since")
