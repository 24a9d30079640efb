"""Run a de-identified research export: cohort → profile → files, CSV and manifest.

The export writes, through a `Sink` (a folder, a zip in the blob store, or a DICOM node):

    DICOM/<pseudonym>/<study>/<series>/<instance>.dcm   de-identified instances
    nodules.csv                                         one row per person, nodule and scan
    manifest.json                                       profile, options, counts, refusals

Pseudonyms and UIDs are keyed HMACs under a key derived from the server key
(domain/deidentification.py): the same person, at any hospital and in any export, has one
PatientID and one date shift, and a UID is remapped to the same UID wherever it appears,
so SR and SEG references stay valid. The key and any mapping back stay in the archive;
the manifest names no source identifier. Every export is audited (PS3.15 A.5 110106
Export), with the original studies it took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset, FileDataset
from sqlalchemy import select

from cloudfilm.domain.access import Principal
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.deidentification import (
    InstanceFacts,
    Options,
    date_shift_days,
    method_codes,
    person_pseudonym,
    pseudo_uid,
    refusal,
    research_key,
    shifted_date,
)
from cloudfilm.services.context import Archive
from cloudfilm.services.nodules.reports import report_series_uid
from cloudfilm.services.research.cohort import Cohort, CohortStudy, Selection, select_cohort
from cloudfilm.services.research.deidentify import LIBRARY, Deidentifier
from cloudfilm.services.research.nodule_table import ScanContext, nodules_csv
from cloudfilm.storage.index.access_models import PersonRecordRow, PersonRow
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow

PROFILE = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
PSEUDONYM_SCHEME = ("HMAC-SHA256 under a key derived from the server key (kept in the "
                    "archive, never exported): PatientID per person, UIDs as 2.25.<128 bits>, "
                    "one date shift of 365 to 3650 days back per person")


class Sink(Protocol):
    """Where an export's files go."""

    def add_instance(self, path: str, ds: FileDataset) -> None: ...
    def add_file(self, path: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    sop_class_uid: str
    series_uid: str
    blob_key: str


@dataclass
class _Person:
    pseudonym: str
    shift_days: int
    identifiers: tuple[str, ...]
    baseline: date | None = None


@dataclass
class _Tally:
    persons: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    instances: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)


def _instances(archive: Archive, study_uid: str) -> list[StoredInstance]:
    with archive.index.session() as session:
        rows = session.execute(
            select(InstanceRow.sop_uid, InstanceRow.sop_class_uid, SeriesRow.series_uid,
                   InstanceRow.blob_key)
            .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
            .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
            .where(StudyRow.study_uid == study_uid)
            .order_by(SeriesRow.id, InstanceRow.instance_number, InstanceRow.id)).all()
    return [StoredInstance(*row) for row in rows]


def _identifiers(archive: Archive, studies: list[CohortStudy]) -> tuple[str, ...]:
    """What names this person in the archive (every record's ID and issuer, the folder's
    name and birth date): words of these never survive Clean Descriptors."""
    values = {v for s in studies for v in (s.patient_id, s.issuer) if v}
    person_ids = {s.person_id for s in studies if s.person_id is not None}
    if person_ids:
        with archive.index.session() as session:
            for row in session.execute(select(PersonRecordRow.patient_id, PersonRecordRow.issuer)
                                       .where(PersonRecordRow.person_id.in_(person_ids))):
                values.update(v for v in row if v)
            for person in session.scalars(select(PersonRow).where(PersonRow.id.in_(person_ids))):
                values.update(v for v in (person.display_name, person.birth_date) if v)
    return tuple(sorted(values))


def _dicom_date(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (TypeError, ValueError):
        return None


def _facts(ds: Dataset, item: StoredInstance, study_uid: str) -> InstanceFacts:
    codes = frozenset(str(c.get("CodeValue", "")) for c in
                      ds.get("DeidentificationMethodCodeSequence", []))
    own = item.series_uid == report_series_uid(study_uid) and ds.get("Manufacturer") == "cloudfilm"
    return InstanceFacts(item.sop_class_uid, str(ds.get("BurnedInAnnotation", "") or ""), codes, own)


class ResearchExport:
    """One export over an opened archive: ``run`` writes everything into a sink."""

    def __init__(self, archive: Archive, selection: Selection, options: Options) -> None:
        self.archive, self.selection, self.options = archive, selection, options
        self.key = research_key(archive.server_key)
        self.tally = _Tally()

    def run(self, sink: Sink, who: Principal, *, export_id: int | None = None,
            destination: str = "", source: str = "") -> dict[str, Any]:
        cohort = select_cohort(self.archive.index, self.selection)
        deid = Deidentifier(self.key, self.options)
        persons = self._persons(cohort)
        for study in cohort.studies:
            self._study(deid, sink, study, persons[study.person_key])
        by_uid = {s.study_uid: s for s in cohort.studies}
        csv_bytes, rows = nodules_csv(cohort.points,
                                      lambda uid: self._scan(by_uid.get(uid), persons))
        sink.add_file("nodules.csv", csv_bytes)
        manifest = self.manifest(rows, export_id)
        sink.add_file("manifest.json", json.dumps(manifest, indent=2).encode("utf-8"))
        self._audit(who, cohort, manifest, destination, source)
        return manifest

    def _persons(self, cohort: Cohort) -> dict[str, _Person]:
        persons = {}
        for key, studies in cohort.persons().items():
            days = [d for d in (_dicom_date(s.study_date) for s in studies) if d]
            persons[key] = _Person(person_pseudonym(self.key, key), date_shift_days(self.key, key),
                                   _identifiers(self.archive, studies), min(days, default=None))
        return persons

    def _study(self, deid: Deidentifier, sink: Sink, study: CohortStudy, person: _Person) -> None:
        for item in _instances(self.archive, study.study_uid):
            with self.archive.blobs.open(item.blob_key) as stream:
                ds = pydicom.dcmread(stream)
            why = refusal(_facts(ds, item, study.study_uid))
            if why is not None:
                self.tally.refused.append({"instance": pseudo_uid(self.key, item.sop_uid),
                                           "reason": why})
                continue
            out = deid.apply(ds, pseudonym=person.pseudonym, shift_days=person.shift_days,
                             known_identifiers=person.identifiers)
            path = "/".join(("DICOM", person.pseudonym, str(out.StudyInstanceUID),
                             str(out.SeriesInstanceUID), f"{out.SOPInstanceUID}.dcm"))
            sink.add_instance(path, out)
            self.tally.persons.add(person.pseudonym)
            self.tally.studies.add(str(out.StudyInstanceUID))
            self.tally.series.add(str(out.SeriesInstanceUID))
            self.tally.instances += 1

    def _scan(self, study: CohortStudy | None,
              persons: dict[str, _Person]) -> ScanContext | None:
        if study is None:
            return None
        person = persons[study.person_key]
        day = _dicom_date(study.study_date)
        if day is None or person.baseline is None:
            return None
        shown = shifted_date(day, person.shift_days).isoformat() if self.options.retain_dates else ""
        return ScanContext(person.pseudonym, pseudo_uid(self.key, study.study_uid), shown,
                           person.baseline)

    def manifest(self, nodule_rows: int, export_id: int | None) -> dict[str, Any]:
        t = self.tally
        return {
            "export": export_id, "profile": PROFILE, "options": self.options.as_dict(),
            "deidentification_method_codes": [
                {"code": c, "scheme": "DCM", "meaning": m} for c, m in method_codes(self.options)],
            "library": LIBRARY, "pseudonyms": PSEUDONYM_SCHEME,
            "selection": self.selection.criteria(),
            "counts": {"persons": len(t.persons), "studies": len(t.studies),
                       "series": len(t.series), "instances": t.instances,
                       "refused": len(t.refused), "nodule_rows": nodule_rows},
            "refused": t.refused,
            "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }

    def _audit(self, who: Principal, cohort: Cohort, manifest: dict[str, Any],
               destination: str, source: str) -> None:
        self.archive.audit.record(AuditEntry(
            actor=who.username or who.kind, action="research-export",
            actor_role=who.role.value if who.role else who.kind, source=source,
            detail={"export": manifest["export"], "destination": destination,
                    "counts": manifest["counts"], "options": manifest["options"],
                    "studies": [s.study_uid for s in cohort.studies][:1000]}))
