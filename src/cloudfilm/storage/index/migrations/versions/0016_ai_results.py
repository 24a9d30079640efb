"""AI results (issue 15, IHE AIR): AI nodes, what was sent to them, what came back

``nodes.ai_profile`` (null: not an AI service), ``ai_since`` (series arriving from then on
are sent) and ``ai_user_id`` (the account its results are stored with). ``ai_requests``:
one row per (node, series), unique, so a series is sent once. ``ai_results``: each SR or
SEG an AI service stored. ``ai_candidates``: findings waiting for a physician.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ai_profile", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ai_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ai_user_id", sa.Integer(), nullable=True))
    op.create_table(
        "ai_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_name", "series_uid", name="uq_ai_request"),
    )
    with op.batch_alter_table("ai_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ai_requests_study_uid"), ["study_uid"])
        batch_op.create_index(batch_op.f("ix_ai_requests_series_uid"), ["series_uid"])
    op.create_table(
        "ai_results",
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("source_series_uid", sa.String(length=64), nullable=False),
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("algorithm_name", sa.String(length=200), nullable=False),
        sa.Column("algorithm_version", sa.String(length=64), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=NOW,
                  nullable=False),
        sa.PrimaryKeyConstraint("sop_uid"),
    )
    with op.batch_alter_table("ai_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ai_results_study_uid"), ["study_uid"])
    _create_candidates()


def _create_candidates() -> None:
    op.create_table(
        "ai_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("algorithm_name", sa.String(length=200), nullable=False),
        sa.Column("algorithm_version", sa.String(length=64), nullable=False),
        sa.Column("centre_x", sa.Float(), nullable=False),
        sa.Column("centre_y", sa.Float(), nullable=False),
        sa.Column("centre_z", sa.Float(), nullable=False),
        sa.Column("diameter_mm", sa.Float(), nullable=False),
        sa.Column("volume_mm3", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("instance_uid", sa.String(length=64), nullable=False),
        sa.Column("pixel_column", sa.Float(), nullable=False),
        sa.Column("pixel_row", sa.Float(), nullable=False),
        sa.Column("result_sop_uid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("measurement_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ai_candidates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ai_candidates_study_uid"), ["study_uid"])
        batch_op.create_index(batch_op.f("ix_ai_candidates_result_sop_uid"), ["result_sop_uid"])


def downgrade() -> None:
    op.drop_table("ai_candidates")
    op.drop_table("ai_results")
    op.drop_table("ai_requests")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("ai_user_id")
        batch_op.drop_column("ai_since")
        batch_op.drop_column("ai_profile")
