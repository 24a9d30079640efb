"""SRs read for nodule measurements, one row each (issue 13: imports correct across nodes)

``sr_imports.sop_uid`` is the primary key: the row is written in the transaction that
adds the SR's measurements, so concurrent readers on several nodes import an SR once.
SRs imported before this revision are found by their measurements' ``sr_instance_uid``.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sr_imports",
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("measurements", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("sop_uid"),
    )
    with op.batch_alter_table("sr_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sr_imports_study_uid"), ["study_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sr_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sr_imports_study_uid"))
    op.drop_table("sr_imports")
