"""hospital-issued cloud films (issue 12)

A film is a link grant on one study plus a ``films`` row saying which hospital record
(PatientID, IssuerOfPatientID) it was issued for and by whom. A film issued from the
console has no owning account, so ``grants.owner_user_id`` may be null. ``code_hash`` is
the SHA-256 of the short code printed on the slip for typing.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.alter_column("owner_user_id", existing_type=sa.Integer(), nullable=True)
    op.create_table(
        "films",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("grant_id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("films", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_films_study_uid"), ["study_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("films", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_films_study_uid"))
    op.drop_table("films")
    op.execute("DELETE FROM web_sessions WHERE grant_id IN "
               "(SELECT id FROM grants WHERE owner_user_id IS NULL)")
    op.execute("DELETE FROM grants WHERE owner_user_id IS NULL")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.alter_column("owner_user_id", existing_type=sa.Integer(), nullable=False)
