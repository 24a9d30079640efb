"""Index tables.

Each level keeps the columns QIDO and C-FIND match on (PS3.18 Table 10.6.1-5) plus
``attrs``: the level's attributes as DICOM JSON, returned as-is. Instances also keep
their whole metadata (DICOM JSON, bulk data as relative BulkDataURIs) and the byte
ranges of every frame, so metadata and frames are served without parsing files.
Counts and ModalitiesInStudy are computed at query time, never stored, so they
can be filtered by access rules without leaking.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class PatientRow(Base):
    """One hospital's record of a patient: (IssuerOfPatientID, PatientID)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer", name="uq_patient_issuer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer: Mapped[str] = mapped_column(String(64), default="")
    # PostgreSQL also has a prefix (varchar_pattern_ops) index on each name: migration 0014.
    name_alphabetic: Mapped[str] = mapped_column(String(200), default="", index=True)
    name_ideographic: Mapped[str] = mapped_column(String(200), default="", index=True)
    name_phonetic: Mapped[str] = mapped_column(String(200), default="")
    name_words: Mapped[str] = mapped_column(String(400), default="")
    birth_date: Mapped[str] = mapped_column(String(16), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    attrs: Mapped[str] = mapped_column(Text, default="{}")

    studies: Mapped[list[StudyRow]] = relationship(back_populates="patient")


class PatientHistoryRow(Base):
    """A record's demographics as they were before a hospital source changed them (issue 11)."""

    __tablename__ = "patient_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"),
                                            index=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    name_alphabetic: Mapped[str] = mapped_column(String(200), default="")
    name_ideographic: Mapped[str] = mapped_column(String(200), default="")
    name_phonetic: Mapped[str] = mapped_column(String(200), default="")
    birth_date: Mapped[str] = mapped_column(String(16), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    attrs: Mapped[str] = mapped_column(Text, default="{}")
    changed_by: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StudyRow(Base):
    __tablename__ = "studies"
    __table_args__ = (Index("ix_studies_date_time", "study_date", "study_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    referring_name: Mapped[str] = mapped_column(String(200), default="")
    referring_words: Mapped[str] = mapped_column(String(400), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    attrs: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 index=True)  # the stable-study watcher's range

    patient: Mapped[PatientRow] = relationship(back_populates="studies")
    series: Mapped[list[SeriesRow]] = relationship(back_populates="study")


class SeriesRow(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    pps_start_date: Mapped[str] = mapped_column(String(8), default="")
    pps_start_time: Mapped[str] = mapped_column(String(16), default="")
    requested_procedure_ids: Mapped[str] = mapped_column(String(200), default="")
    scheduled_step_ids: Mapped[str] = mapped_column(String(200), default="")
    attrs: Mapped[str] = mapped_column(Text, default="{}")

    study: Mapped[StudyRow] = relationship(back_populates="series")
    instances: Mapped[list[InstanceRow]] = relationship(back_populates="series")


class InstanceRow(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bits_allocated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_of_frames: Mapped[int] = mapped_column(Integer, default=0)
    blob_key: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    frames: Mapped[str] = mapped_column(Text, default="[]")
    metadata_json: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    series: Mapped[SeriesRow] = relationship(back_populates="instances")


class NodeRow(Base):
    """A known remote DICOM node (another hospital's PACS, a modality, a viewer)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ae_title: Mapped[str] = mapped_column(String(16), index=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    dicomweb_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    sees: Mapped[str] = mapped_column(String(8), default="own", server_default="own")
    issuer: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # set: studies of ``issuer`` arriving from then on get a cloud film once stable (issue 12)
    issue_films_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                               nullable=True)
    # an AI service (issue 15): its profile, since when series are sent, its account
    ai_profile: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ai_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ai_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
