"""what each known node may query and retrieve

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sees", sa.String(length=8), server_default="own",
                                      nullable=False))
        batch_op.add_column(sa.Column("issuer", sa.String(length=64), server_default="",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("issuer")
        batch_op.drop_column("sees")
