"""AI services' work (issue 15, IHE AI Results): what was sent, what came back, and the
candidates a physician decides on.

``ai_requests``: one row per (AI node, series) ever, unique, so a series is sent to a node
once however many workers scan (status ``skipped`` records a series the node's profile
does not take, so it is not looked at again). ``ai_results``: each SR or SEG an AI service
stored, with the algorithm that made it; its SOP Instance UID is how patient views leave
it out. ``ai_candidates``: one finding each, from an AI node (``source`` = its name) or the
built-in detector (``builtin``); it becomes a nodule measurement only when accepted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base

CANDIDATE_STATES = ("pending", "accepted", "rejected")
REQUEST_STATES = ("skipped", "sending", "sent", "failed")


class AiRequestRow(Base):
    __tablename__ = "ai_requests"
    __table_args__ = (UniqueConstraint("node_name", "series_uid", name="uq_ai_request"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_name: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(12))  # one of REQUEST_STATES
    detail: Mapped[str] = mapped_column(Text, default="")
    instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AiResultRow(Base):
    __tablename__ = "ai_results"

    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))  # the SR's or SEG's own series
    source_series_uid: Mapped[str] = mapped_column(String(64))
    node_name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # sr | seg
    algorithm_name: Mapped[str] = mapped_column(String(200), default="")
    algorithm_version: Mapped[str] = mapped_column(String(64), default="")
    candidates: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())


class AiCandidateRow(Base):
    __tablename__ = "ai_candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # "builtin" or the AI node's name
    algorithm_name: Mapped[str] = mapped_column(String(200), default="")
    algorithm_version: Mapped[str] = mapped_column(String(64), default="")
    centre_x: Mapped[float] = mapped_column(Float)
    centre_y: Mapped[float] = mapped_column(Float)
    centre_z: Mapped[float] = mapped_column(Float)
    diameter_mm: Mapped[float] = mapped_column(Float)
    volume_mm3: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    instance_uid: Mapped[str] = mapped_column(String(64))
    pixel_column: Mapped[float] = mapped_column(Float)
    pixel_row: Mapped[float] = mapped_column(Float)
    result_sop_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # CANDIDATE_STATES
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    measurement_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
