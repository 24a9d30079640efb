"""Nodules, their measurements per study and the guideline assessment of each exam.

A nodule belongs to a patient's folder: the Person when the hospital record is linked
(so one nodule is followed across hospitals), else the hospital's patient row. A
measurement points at its image (study/series/instance/frame, centre in patient mm) and
at the SR instance that carries it in the archive; ``link`` records how it was attached
to its nodule (matched automatically, confirmed or changed by a physician, or new).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base

LINKS = ("auto", "confirmed", "new", "unlinked")


class NoduleRow(Base):
    __tablename__ = "nodules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True, index=True)
    patient_pk: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), nullable=True, index=True)
    label: Mapped[str] = mapped_column(String(16))  # "N1", "N2", ... within the folder
    tracking_uid: Mapped[str] = mapped_column(String(64), unique=True)  # SR TrackingUniqueIdentifier
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class NoduleMeasurementRow(Base):
    __tablename__ = "nodule_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nodule_id: Mapped[int | None] = mapped_column(ForeignKey("nodules.id"), nullable=True, index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True, index=True)
    patient_pk: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), nullable=True, index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    instance_uid: Mapped[str] = mapped_column(String(64))
    frame_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    study_date: Mapped[date] = mapped_column(Date)
    centre_x: Mapped[float] = mapped_column(Float)
    centre_y: Mapped[float] = mapped_column(Float)
    centre_z: Mapped[float] = mapped_column(Float)
    long_axis_mm: Mapped[float] = mapped_column(Float)
    short_axis_mm: Mapped[float] = mapped_column(Float)
    volume_mm3: Mapped[float | None] = mapped_column(Float, nullable=True)
    solid_component_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    nodule_type: Mapped[str] = mapped_column(String(16))
    calcification: Mapped[str] = mapped_column(String(16), default="none")
    spiculated: Mapped[bool] = mapped_column(Boolean, default=False)
    juxtapleural: Mapped[bool] = mapped_column(Boolean, default=False)
    airway: Mapped[str] = mapped_column(String(24), default="none")
    lobe: Mapped[str | None] = mapped_column(String(4), nullable=True)
    method: Mapped[str] = mapped_column(String(16))  # manual | semi-automatic
    measured_by: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16), default="cloudfilm")  # cloudfilm | sr-import
    link: Mapped[str] = mapped_column(String(12), default="new")  # one of LINKS
    match_distance_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    sr_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    outline: Mapped[str] = mapped_column(Text, default="{}")  # JSON: best-slice contour and axes
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class NoduleAssessmentRow(Base):
    """The exam-level guideline result for one study: what the follow-up reminders read."""

    __tablename__ = "nodule_assessments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True, index=True)
    patient_pk: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), nullable=True, index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[date] = mapped_column(Date)
    guideline: Mapped[str] = mapped_column(String(24))  # fleischner-2017 | lung-rads-2022
    category: Mapped[str] = mapped_column(String(60))
    recommendation: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text)
    next_scan_earliest: Mapped[date | None] = mapped_column(Date, nullable=True)
    next_scan_latest: Mapped[date | None] = mapped_column(Date, nullable=True)
    result: Mapped[str] = mapped_column(Text, default="{}")  # the full advise JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SrImportRow(Base):
    """One SR another program stored (OHIF's TID 1500), read for nodule measurements once.

    Inserted in the transaction that adds the SR's measurements, so two nodes (or two
    requests) reading a study at once import each SR once: the second insert of the
    primary key waits for the first transaction and then fails. An SR with nothing to
    import keeps its row too (``measurements`` 0), so it is not read again.
    """

    __tablename__ = "sr_imports"

    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    measurements: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
