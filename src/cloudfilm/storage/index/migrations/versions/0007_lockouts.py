"""caregiver invitations by link: the invited account is known only once it accepts (issue 11)

Lock-out counters need no new column: each try is reserved on the existing
``rate_limits`` rows (services/access/ratelimit.py).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("caregivers", schema=None) as batch_op:
        batch_op.alter_column("caregiver_user_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM caregivers WHERE caregiver_user_id IS NULL")
    with op.batch_alter_table("caregivers", schema=None) as batch_op:
        batch_op.alter_column("caregiver_user_id", existing_type=sa.Integer(), nullable=False)
