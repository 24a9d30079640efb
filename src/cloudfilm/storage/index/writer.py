"""Index writes: upsert the patient/study/series rows and insert or replace instances.

Runs inside the caller's transaction; conflicts raise `IndexConflict` with a reason
so one instance fails alone (the caller wraps each in a SAVEPOINT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow


class IndexConflict(ValueError):
    """The instance disagrees with what is already indexed."""


@dataclass
class ParentCache:
    """Row ids already resolved in this transaction, so a batch asks once per parent."""

    patients: dict[tuple[str, str], int] = field(default_factory=dict)
    studies: dict[str, tuple[int, int]] = field(default_factory=dict)
    series: dict[str, tuple[int, int]] = field(default_factory=dict)
    patient_ids: dict[int, str] = field(default_factory=dict)  # patient pk -> PatientID

    def forget(self, facts: InstanceFacts) -> None:
        """After a rolled-back SAVEPOINT: rows it created are gone, so are their ids."""
        key = (facts.patient["patient_id"], facts.patient["issuer"])
        pk = self.patients.pop(key, None)
        if pk is not None:
            self.patient_ids.pop(pk, None)
        self.studies.pop(facts.study_uid, None)
        self.series.pop(facts.series_uid, None)


def _dumps(value: dict[str, object]) -> str:
    return orjson.dumps(value).decode()


def upsert_patient(session: Session, facts: InstanceFacts, cache: ParentCache) -> int:
    key = (facts.patient["patient_id"], facts.patient["issuer"])
    if key in cache.patients:
        return cache.patients[key]
    row = session.scalars(select(PatientRow).where(
        PatientRow.patient_id == key[0], PatientRow.issuer == key[1])).first()
    attrs = _dumps(facts.patient_attrs)
    if row is None:
        row = PatientRow(**facts.patient, attrs=attrs)
        session.add(row)
        session.flush()
    elif row.attrs != attrs:
        for name, value in facts.patient.items():
            setattr(row, name, value)
        row.attrs = attrs
    cache.patients[key] = row.id
    return row.id


def _existing_study(session: Session, study_uid: str, cache: ParentCache) -> tuple[int, int] | None:
    """(study pk, patient pk) of a stored study, asked once per transaction."""
    cached = cache.studies.get(study_uid)
    if cached is None:
        row = session.execute(select(StudyRow.id, StudyRow.patient_pk)
                              .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            return None
        cached = cache.studies[study_uid] = (row.id, row.patient_pk)
    return cached


def upsert_study(session: Session, facts: InstanceFacts, patient_pk: int, cache: ParentCache) -> int:
    cached = _existing_study(session, facts.study_uid, cache)
    if cached is None:
        row = StudyRow(patient_pk=patient_pk, study_uid=facts.study_uid, **facts.study,
                       attrs=_dumps(facts.study_attrs))
        session.add(row)
        session.flush()
        cached = cache.studies[facts.study_uid] = (row.id, row.patient_pk)
    if cached[1] != patient_pk:
        raise IndexConflict(
            f"study {facts.study_uid} already belongs to another patient "
            f"(PatientID/IssuerOfPatientID differ)")
    return cached[0]


def upsert_series(session: Session, facts: InstanceFacts, study_pk: int, cache: ParentCache) -> int:
    cached = cache.series.get(facts.series_uid)
    if cached is None:
        row = session.scalars(select(SeriesRow).where(SeriesRow.series_uid == facts.series_uid)).first()
        if row is None:
            row = SeriesRow(study_pk=study_pk, series_uid=facts.series_uid, **facts.series,
                            attrs=_dumps(facts.series_attrs))
            session.add(row)
            session.flush()
        cached = cache.series[facts.series_uid] = (row.id, row.study_pk)
    if cached[1] != study_pk:
        raise IndexConflict(f"series {facts.series_uid} already belongs to another study")
    return cached[0]


def find_instance(session: Session, sop_uid: str) -> InstanceRow | None:
    return session.scalars(select(InstanceRow).where(InstanceRow.sop_uid == sop_uid)).first()


def _issuerless_study_patient(session: Session, facts: InstanceFacts,
                              cache: ParentCache) -> int | None:
    """An instance without IssuerOfPatientID joins an existing study of the same PatientID.

    Derived objects written by viewers (OHIF's measurement SRs, secondary captures) often
    copy PatientID but drop the optional IssuerOfPatientID; without this they would be
    refused as "another patient". Only the issuer may be missing: a different PatientID
    is still a conflict. The study lookup is the one `upsert_study` needs anyway, so a
    new study costs no extra query.
    """
    if facts.patient["issuer"]:
        return None
    study = _existing_study(session, facts.study_uid, cache)
    if study is None:
        return None
    patient_pk = study[1]
    if patient_pk not in cache.patient_ids:
        cache.patient_ids[patient_pk] = session.scalar(
            select(PatientRow.patient_id).where(PatientRow.id == patient_pk)) or ""
    return patient_pk if cache.patient_ids[patient_pk] == facts.patient["patient_id"] else None


def write_instance(session: Session, facts: InstanceFacts, *, blob_key: str, size: int,
                   sha256: str, cache: ParentCache, replace: InstanceRow | None = None) -> None:
    """Insert the instance (or replace an existing row), creating parents as needed."""
    patient_pk = _issuerless_study_patient(session, facts, cache) \
        or upsert_patient(session, facts, cache)
    study_pk = upsert_study(session, facts, patient_pk, cache)
    series_pk = upsert_series(session, facts, study_pk, cache)
    if replace is not None:
        if replace.series_pk != series_pk:
            raise IndexConflict(f"instance {facts.sop_instance_uid} already belongs to another series")
        session.execute(delete(InstanceRow).where(InstanceRow.id == replace.id))
    session.add(InstanceRow(
        series_pk=series_pk, sop_uid=facts.sop_instance_uid, sop_class_uid=facts.sop_class_uid,
        transfer_syntax_uid=facts.transfer_syntax_uid, blob_key=blob_key, size=size, sha256=sha256,
        frames=orjson.dumps(facts.frames).decode(), metadata_json=facts.metadata, **facts.instance,
    ))
    session.flush()
