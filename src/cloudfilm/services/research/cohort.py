"""Which studies a research export takes: explicit lists, or a cohort by its features.

Study filters (date, modality, hospital) keep a study; nodule filters (type, size, growth,
category, guideline) choose *nodules*, and a chosen nodule brings every study it was
measured in, so a cohort of "solid nodules that grew" carries each nodule's baseline and
follow-ups, across hospitals. All given filters must hold (AND); values within one filter
are alternatives (OR).

Each study belongs to a person key: ``person:<id>`` when its hospital record is linked to
a Person (one case folder across hospitals), else ``record:<issuer>|<PatientID>``. The
pseudonyms are derived from this key (domain/deidentification.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select

from cloudfilm.services.research.nodule_table import GROWTH, NodulePoint, nodule_points
from cloudfilm.storage.index.access_models import PersonRecordRow, PersonRow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import PatientRow, SeriesRow, StudyRow
from cloudfilm.storage.index.queries import record_of_patient

GUIDELINES = {"fleischner": "fleischner-2017", "lungrads": "lung-rads-2022"}
NODULE_TYPES = ("solid", "part-solid", "ground-glass")


class SelectionError(ValueError):
    """A cohort request that cannot be answered (the message says which part)."""


@dataclass(frozen=True)
class Selection:
    """The cohort: ``everything``, explicit studies or persons, and/or filters."""

    everything: bool = False
    study_uids: tuple[str, ...] = ()
    person_ids: tuple[int, ...] = ()
    date_from: date | None = None
    date_until: date | None = None
    modalities: tuple[str, ...] = ()
    hospitals: tuple[str, ...] = ()
    nodule_types: tuple[str, ...] = ()
    min_size_mm: float | None = None
    max_size_mm: float | None = None
    growth: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    guideline: str | None = None

    @property
    def nodule_filtered(self) -> bool:
        return bool(self.nodule_types or self.growth or self.categories or self.guideline
                    or self.min_size_mm is not None or self.max_size_mm is not None)

    @property
    def filtered(self) -> bool:
        return self.nodule_filtered or bool(self.date_from or self.date_until
                                            or self.modalities or self.hospitals)

    def check(self) -> None:
        if not (self.everything or self.study_uids or self.person_ids or self.filtered):
            raise SelectionError("choose a cohort: all, studies, persons or at least one filter")
        for value in self.nodule_types:
            if value not in NODULE_TYPES:
                raise SelectionError(f"nodule type must be one of {', '.join(NODULE_TYPES)}")
        for value in self.growth:
            if value not in GROWTH:
                raise SelectionError(f"growth must be one of {', '.join(GROWTH)}")
        if self.guideline is not None and self.guideline not in GUIDELINES:
            raise SelectionError(f"guideline must be one of {', '.join(GUIDELINES)}")
        for bound in (self.min_size_mm, self.max_size_mm):
            if bound is not None and not 0 <= bound <= 1000:
                raise SelectionError("sizes are millimetres between 0 and 1000")
        if self.date_from and self.date_until and self.date_from > self.date_until:
            raise SelectionError("the 'from' date is after the 'until' date")

    def criteria(self) -> dict[str, Any]:
        """The selection as the manifest states it: the filters, and only the *number* of
        studies, persons or hospitals named (their identifiers would map the export back)."""
        out = {k: v for k, v in asdict(self).items()
               if k not in ("study_uids", "person_ids", "hospitals")
               and v not in (None, (), False)}
        for key in ("date_from", "date_until"):
            if key in out:
                out[key] = out[key].isoformat()
        if self.study_uids:
            out["studies_named"] = len(self.study_uids)
        if self.person_ids:
            out["persons_named"] = len(self.person_ids)
        if self.hospitals:
            out["hospitals_named"] = len(self.hospitals)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class CohortStudy:
    study_uid: str
    study_date: str  # DICOM DA as stored (may be empty)
    person_key: str
    person_id: int | None
    patient_id: str
    issuer: str
    modalities: frozenset[str] = frozenset()


@dataclass
class Cohort:
    studies: list[CohortStudy] = field(default_factory=list)
    points: list[NodulePoint] = field(default_factory=list)  # measurements in these studies

    def persons(self) -> dict[str, list[CohortStudy]]:
        grouped: dict[str, list[CohortStudy]] = defaultdict(list)
        for study in self.studies:
            grouped[study.person_key].append(study)
        return dict(grouped)


def person_key(person_id: int | None, issuer: str, patient_id: str) -> str:
    return f"person:{person_id}" if person_id is not None else f"record:{issuer}|{patient_id}"


def _all_studies(index: Index) -> list[CohortStudy]:
    with index.session() as session:
        rows = session.execute(
            select(StudyRow.study_uid, StudyRow.study_date, PatientRow.patient_id,
                   PatientRow.issuer, PersonRecordRow.person_id)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .outerjoin(PersonRecordRow, record_of_patient())
            .order_by(StudyRow.study_date, StudyRow.id)).all()
        modalities: dict[str, set[str]] = defaultdict(set)
        for uid, modality in session.execute(
                select(StudyRow.study_uid, SeriesRow.modality)
                .join(SeriesRow, SeriesRow.study_pk == StudyRow.id)):
            modalities[uid].add(modality or "")
    return [CohortStudy(r.study_uid, r.study_date or "", person_key(r.person_id, r.issuer or "",
                                                                      r.patient_id),
                        r.person_id, r.patient_id, r.issuer or "",
                        frozenset(modalities[r.study_uid])) for r in rows]


def _named(index: Index, studies: list[CohortStudy], selection: Selection) -> list[CohortStudy]:
    """The explicitly named studies and persons' studies (unknown ones are an error)."""
    if selection.everything or not (selection.study_uids or selection.person_ids):
        return studies
    known = {s.study_uid for s in studies}
    missing = [uid for uid in selection.study_uids if uid not in known]
    if missing:
        raise SelectionError(f"study {missing[0]} is not stored")
    with index.session() as session:
        persons = set(session.scalars(select(PersonRow.id).where(
            PersonRow.id.in_(selection.person_ids))))
    absent = [p for p in selection.person_ids if p not in persons]
    if absent:
        raise SelectionError(f"person {absent[0]} does not exist")
    named = set(selection.study_uids)
    return [s for s in studies if s.study_uid in named or s.person_id in persons]


def _study_kept(study: CohortStudy, selection: Selection) -> bool:
    day = study.study_date
    if selection.date_from and not (day and day >= selection.date_from.strftime("%Y%m%d")):
        return False
    if selection.date_until and not (day and day <= selection.date_until.strftime("%Y%m%d")):
        return False
    if selection.modalities and not study.modalities & {m.upper() for m in selection.modalities}:
        return False
    return not selection.hospitals or study.issuer in selection.hospitals


def _point_matches(point: NodulePoint, selection: Selection) -> bool:
    if selection.nodule_types and point.nodule_type not in selection.nodule_types:
        return False
    if selection.min_size_mm is not None and point.mean_mm < selection.min_size_mm:
        return False
    if selection.max_size_mm is not None and point.mean_mm > selection.max_size_mm:
        return False
    if selection.growth and point.growth not in selection.growth:
        return False
    if selection.guideline and point.guideline != GUIDELINES[selection.guideline]:
        return False
    wanted = {c.casefold() for c in selection.categories}
    return not wanted or point.category.casefold() in wanted


def select_cohort(index: Index, selection: Selection) -> Cohort:
    """The cohort's studies (ordered by date) and the nodule measurements made in them."""
    selection.check()
    studies = [s for s in _named(index, _all_studies(index), selection)
               if _study_kept(s, selection)]
    points = nodule_points(index)
    if selection.nodule_filtered:
        nodules = {p.nodule_id for p in points if _point_matches(p, selection)}
        measured = {p.study_uid for p in points if p.nodule_id in nodules}
        studies = [s for s in studies if s.study_uid in measured]
    chosen = {s.study_uid for s in studies}
    return Cohort(studies, [p for p in points if p.study_uid in chosen])
