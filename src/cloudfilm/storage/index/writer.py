"""Index writes: upsert the patient/study/series rows and insert or replace instances.

Runs inside the caller's transaction; conflicts raise `IndexConflict` with a reason
so one instance fails alone (the caller wraps each in a SAVEPOINT). What a source may
do to records already in the index is its `WriteRights` (issue 11): hospital sources
may add to any record and correct its demographics, keeping the previous values in
``patient_history``; anyone else may create new records and add to their own, and
never changes what a hospital stored. The check runs here, inside the transaction
that writes, so nothing that appears between screening and writing can be taken over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.storage.index.models import (
    InstanceRow,
    PatientHistoryRow,
    PatientRow,
    SeriesRow,
    StudyRow,
)

RecordKey = tuple[str, str]  # (PatientID, IssuerOfPatientID)


class IndexConflict(ValueError):
    """The instance disagrees with what is already indexed."""


class RecordNotJoinable(IndexConflict):
    """The instance would add to a record, study or instance that is not the source's."""


@dataclass(frozen=True)
class WriteRights:
    """What one source may do to what is already indexed (the admission rule, issue 11).

    ``changes_demographics``: a hospital source (admin, operator, registered node, the
    import command) corrects a record's stored name, birth date and sex; an upload by a
    patient, caregiver, link or unregistered AE never does. ``joinable``: the existing
    records it may add to; None means any. A record it creates is its own for the rest
    of that transaction.
    ``source`` names it in the demographics history.
    """

    changes_demographics: bool = True
    joinable: frozenset[RecordKey] | None = None
    source: str = ""

    @property
    def screened(self) -> bool:
        """Refusals must not tell this source what else is stored (issue 11, finding 9)."""
        return self.joinable is not None

    def may_join(self, key: RecordKey) -> bool:
        return self.joinable is None or key in self.joinable


HOSPITAL = WriteRights()


@dataclass
class ParentCache:
    """Row ids already resolved in this transaction, so a batch asks once per parent."""

    patients: dict[RecordKey, int] = field(default_factory=dict)
    studies: dict[str, tuple[int, int]] = field(default_factory=dict)
    series: dict[str, tuple[int, int]] = field(default_factory=dict)
    patient_ids: dict[int, str] = field(default_factory=dict)  # patient pk -> PatientID
    created: set[RecordKey] = field(default_factory=set)  # records this transaction made
    keys: dict[int, RecordKey] = field(default_factory=dict)  # patient pk -> record

    def forget(self, facts: InstanceFacts) -> None:
        """After a rolled-back SAVEPOINT: rows it created are gone, so are their ids."""
        key = (facts.patient["patient_id"], facts.patient["issuer"])
        pk = self.patients.pop(key, None)
        if pk is not None:
            self.patient_ids.pop(pk, None)
            self.keys.pop(pk, None)
        self.created.discard(key)
        self.studies.pop(facts.study_uid, None)
        self.series.pop(facts.series_uid, None)


def _dumps(value: dict[str, object]) -> str:
    return orjson.dumps(value).decode()


def find_patient(session: Session, key: RecordKey) -> PatientRow | None:
    return session.scalars(select(PatientRow).where(
        PatientRow.patient_id == key[0], PatientRow.issuer == key[1])).first()


def study_record(session: Session, study_uid: str) -> RecordKey | None:
    """The (PatientID, IssuerOfPatientID) a stored study belongs to."""
    row = session.execute(select(PatientRow.patient_id, PatientRow.issuer)
                          .join(StudyRow, StudyRow.patient_pk == PatientRow.id)
                          .where(StudyRow.study_uid == study_uid)).first()
    return (row.patient_id, row.issuer) if row is not None else None


def instance_record(session: Session, sop_uid: str) -> RecordKey | None:
    """The record a stored instance belongs to."""
    row = session.execute(select(PatientRow.patient_id, PatientRow.issuer)
                          .join(StudyRow, StudyRow.patient_pk == PatientRow.id)
                          .join(SeriesRow, SeriesRow.study_pk == StudyRow.id)
                          .join(InstanceRow, InstanceRow.series_pk == SeriesRow.id)
                          .where(InstanceRow.sop_uid == sop_uid)).first()
    return (row.patient_id, row.issuer) if row is not None else None


def _keep_history(session: Session, row: PatientRow, source: str) -> None:
    """The values a hospital correction replaces, so nothing a hospital sent is lost."""
    session.add(PatientHistoryRow(
        patient_pk=row.id, patient_id=row.patient_id, issuer=row.issuer,
        name_alphabetic=row.name_alphabetic, name_ideographic=row.name_ideographic,
        name_phonetic=row.name_phonetic, birth_date=row.birth_date, sex=row.sex,
        attrs=row.attrs, changed_by=source[:200]))


def upsert_patient(session: Session, facts: InstanceFacts, cache: ParentCache,
                   rights: WriteRights = HOSPITAL) -> int:
    """The record's row; an existing one must be joinable, and only a hospital updates it."""
    key = (facts.patient["patient_id"], facts.patient["issuer"])
    if key in cache.patients:
        return cache.patients[key]
    row = find_patient(session, key)
    attrs = _dumps(facts.patient_attrs)
    if row is None:
        row = PatientRow(**facts.patient, attrs=attrs)
        session.add(row)
        session.flush()
        cache.created.add(key)
    elif not rights.may_join(key):
        raise RecordNotJoinable(f"record {key} is not the source's")
    elif row.attrs != attrs and rights.changes_demographics:
        _keep_history(session, row, rights.source)
        for name, value in facts.patient.items():
            setattr(row, name, value)
        row.attrs = attrs
    cache.patients[key] = row.id
    cache.keys[row.id] = key
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


def may_add_to(rights: WriteRights, cache: ParentCache, key: RecordKey | None) -> bool:
    """A source may add to records it may join and to those this transaction created."""
    return key is None or key in cache.created or rights.may_join(key)


def _require_joinable(session: Session, patient_pk: int, cache: ParentCache,
                      rights: WriteRights) -> None:
    if not rights.screened:
        return
    key = cache.keys.get(patient_pk)
    if key is None:
        row = session.execute(select(PatientRow.patient_id, PatientRow.issuer)
                              .where(PatientRow.id == patient_pk)).one()
        key = cache.keys[patient_pk] = (row.patient_id, row.issuer)
    if not may_add_to(rights, cache, key):
        raise RecordNotJoinable(f"record {key} is not the source's")


def write_instance(session: Session, facts: InstanceFacts, *, blob_key: str, size: int,
                   sha256: str, cache: ParentCache, replace: InstanceRow | None = None,
                   rights: WriteRights = HOSPITAL) -> None:
    """Insert the instance (or replace an existing row), creating parents as needed."""
    patient_pk = _issuerless_study_patient(session, facts, cache)
    if patient_pk:
        _require_joinable(session, patient_pk, cache, rights)
    else:
        patient_pk = upsert_patient(session, facts, cache, rights)
    study_pk = upsert_study(session, facts, patient_pk, cache)
    series_pk = upsert_series(session, facts, study_pk, cache)
    if replace is not None:
        if replace.series_pk != series_pk:
            raise IndexConflict(f"instance {facts.sop_instance_uid} already belongs to another series")
        session.execute(delete(InstanceRow).where(InstanceRow.id == replace.id))
    session.add(InstanceRow(**instance_values(facts, series_pk, blob_key, size, sha256)))
    session.flush()


def instance_values(facts: InstanceFacts, series_pk: int, blob_key: str, size: int,
                    sha256: str) -> dict[str, Any]:
    """An instance row's columns: one definition for the ORM write above and the group
    commit's multi-row INSERT (services/archive/group_index.py)."""
    return dict(series_pk=series_pk, sop_uid=facts.sop_instance_uid,
                sop_class_uid=facts.sop_class_uid, transfer_syntax_uid=facts.transfer_syntax_uid,
                blob_key=blob_key, size=size, sha256=sha256,
                frames=orjson.dumps(facts.frames).decode(), metadata_json=facts.metadata,
                **facts.instance)
