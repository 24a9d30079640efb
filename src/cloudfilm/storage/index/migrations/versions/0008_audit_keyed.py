"""keyed audit chain (issue 11): a chain version per audit record

Rows written before this revision keep version 1 (plain SHA-256) and are still
verified as such; new rows are version 2 (HMAC-SHA256 under the audit key). A
version-1 row after a version-2 row is reported as tampering, and the first keyed
row's HMAC covers the last plain row's hash, so the old rows cannot be rewritten
undetected once a keyed row follows them.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("chain_version", sa.Integer(), nullable=False,
                                   server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("chain_version")
