"""patient name prefix indexes for PostgreSQL (issue 14, the scale curve)

A QIDO ``PatientName=DOE*`` becomes ``LIKE 'doe%'`` on the folded name columns. On
PostgreSQL an ordinary b-tree serves ``LIKE`` only under the C collation, and CI's
database (like most) is ``C.UTF-8``/``en_US.UTF-8``; so the patients table was scanned
whole for every name prefix. ``varchar_pattern_ops`` indexes compare bytes, which is what
a prefix ``LIKE`` needs, and the planner combines the three with a BitmapOr. SQLite
keeps its plain indexes (its ``LIKE`` ignores ASCII case, so a b-tree of case-sensitive
text cannot serve it there).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = ("name_alphabetic", "name_ideographic", "name_phonetic")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.execute(f"CREATE INDEX ix_patients_{column}_prefix ON patients "
                   f"({column} varchar_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS ix_patients_{column}_prefix")
