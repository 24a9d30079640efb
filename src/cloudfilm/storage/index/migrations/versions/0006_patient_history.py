"""demographics history kept when a hospital source changes a record (issue 11)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("patient_pk", sa.Integer(), sa.ForeignKey("patients.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("name_alphabetic", sa.String(200), nullable=False),
        sa.Column("name_ideographic", sa.String(200), nullable=False),
        sa.Column("name_phonetic", sa.String(200), nullable=False),
        sa.Column("birth_date", sa.String(16), nullable=False),
        sa.Column("sex", sa.String(16), nullable=False),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False))
    op.create_index("ix_patient_history_patient_pk", "patient_history", ["patient_pk"])


def downgrade() -> None:
    op.drop_index("ix_patient_history_patient_pk", table_name="patient_history")
    op.drop_table("patient_history")
