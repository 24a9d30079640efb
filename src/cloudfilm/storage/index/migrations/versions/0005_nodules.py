"""nodules, their measurements per study, and exam assessments

Revision ID: 0005
Revises: 0004
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _owner() -> list[sa.Column[Any]]:
    return [sa.Column("person_id", sa.Integer(), sa.ForeignKey("persons.id"), nullable=True),
            sa.Column("patient_pk", sa.Integer(), sa.ForeignKey("patients.id"), nullable=True)]


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "nodules",
        sa.Column("id", sa.Integer(), primary_key=True),
        *_owner(),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("tracking_uid", sa.String(64), nullable=False, unique=True),
        _created())
    op.create_table(
        "nodule_measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nodule_id", sa.Integer(), sa.ForeignKey("nodules.id"), nullable=True),
        *_owner(),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("instance_uid", sa.String(64), nullable=False),
        sa.Column("frame_number", sa.Integer(), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=False),
        sa.Column("centre_x", sa.Float(), nullable=False),
        sa.Column("centre_y", sa.Float(), nullable=False),
        sa.Column("centre_z", sa.Float(), nullable=False),
        sa.Column("long_axis_mm", sa.Float(), nullable=False),
        sa.Column("short_axis_mm", sa.Float(), nullable=False),
        sa.Column("volume_mm3", sa.Float(), nullable=True),
        sa.Column("solid_component_mm", sa.Float(), nullable=True),
        sa.Column("nodule_type", sa.String(16), nullable=False),
        sa.Column("calcification", sa.String(16), nullable=False),
        sa.Column("spiculated", sa.Boolean(), nullable=False),
        sa.Column("juxtapleural", sa.Boolean(), nullable=False),
        sa.Column("airway", sa.String(24), nullable=False),
        sa.Column("lobe", sa.String(4), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("measured_by", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("link", sa.String(12), nullable=False),
        sa.Column("match_distance_mm", sa.Float(), nullable=True),
        sa.Column("sr_instance_uid", sa.String(64), nullable=True),
        sa.Column("outline", sa.Text(), nullable=False),
        _created())
    op.create_table(
        "nodule_assessments",
        sa.Column("id", sa.Integer(), primary_key=True),
        *_owner(),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_date", sa.Date(), nullable=False),
        sa.Column("guideline", sa.String(24), nullable=False),
        sa.Column("category", sa.String(60), nullable=False),
        sa.Column("recommendation", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("next_scan_earliest", sa.Date(), nullable=True),
        sa.Column("next_scan_latest", sa.Date(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        _created())
    for table in ("nodules", "nodule_measurements", "nodule_assessments"):
        op.create_index(f"ix_{table}_person_id", table, ["person_id"])
        op.create_index(f"ix_{table}_patient_pk", table, ["patient_pk"])
    op.create_index("ix_nodule_measurements_nodule_id", "nodule_measurements", ["nodule_id"])
    op.create_index("ix_nodule_measurements_study_uid", "nodule_measurements", ["study_uid"])
    op.create_index("ix_nodule_measurements_sr_instance_uid", "nodule_measurements",
                    ["sr_instance_uid"])


def downgrade() -> None:
    op.drop_table("nodule_assessments")
    op.drop_table("nodule_measurements")
    op.drop_table("nodules")
