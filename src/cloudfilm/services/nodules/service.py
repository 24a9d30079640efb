"""Nodule care use cases: measure, track across scans, assess, and read the trajectory back.

Why one service: a click in the viewer, an SR stored from OHIF and a physician's link
all change the same three tables (nodules, measurements, assessments), and each change
must leave the exam's guideline result and its SR in the archive up to date.

A *folder* is where a patient's nodules live: the Person when the hospital record is
linked to one (so a nodule is followed across hospitals), else that hospital's patient
row. Tracking matches a study's measurements with the latest earlier study that has
measurements: the two CTs are registered (rigid, lung-masked) unless they share a frame
of reference, then nearest centres are paired (`domain.tracking`). A physician's
decision (``confirmed`` link, ``new``, ``unlinked``) is never overwritten by matching.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Permission, Principal
from cloudfilm.domain.advice import CaseError, advise_json
from cloudfilm.domain.growth import change
from cloudfilm.domain.nodule import (
    Lobe,
    Method,
    NoduleType,
)
from cloudfilm.services.nodules.model import (
    DEFAULT_GUIDELINE,
    DEFAULT_RISK,
    GUIDELINES,
    Folder,
    NewMeasurement,
    NoduleError,
    NotFound,
    StudyFacts,
    age_at,
    measurement_dict,
    new_uid,
    parse_date,
    to_domain,
    validate_measurement,
)
from cloudfilm.services.nodules.reports import import_study_srs, write_study_sr
from cloudfilm.storage.index.access_models import PersonRecordRow, PersonRow
from cloudfilm.storage.index.models import PatientRow, StudyRow
from cloudfilm.storage.index.nodule_models import (
    NoduleAssessmentRow,
    NoduleMeasurementRow,
    NoduleRow,
    SrImportRow,
)
from cloudfilm.storage.index.queries import record_of_patient

if TYPE_CHECKING:
    from cloudfilm.domain.volume import CtVolume
    from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

class _TransformCache:
    """Registrations are seconds of work; a pair of series is registered once per process."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.items: dict[tuple[str, str], Any] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self.lock:
            return self.items.get(key)

    def put(self, key: tuple[str, str], value: Any) -> None:
        with self.lock:
            if len(self.items) >= self.size:
                self.items.pop(next(iter(self.items)))
            self.items[key] = value


_TRANSFORMS = _TransformCache()
IDENTITY = "same frame of reference"
UNREGISTERED = "not registered"
SETTLE_JOB = "nodules.settle"


def settle_key(folder: Folder) -> str:
    """The settle job's key: one waits per folder, and a folder is settled by one worker
    at a time."""
    if folder.person_id is not None:
        return f"{SETTLE_JOB}:person:{folder.person_id}"
    return f"{SETTLE_JOB}:patient:{folder.patient_pk}"


def folder_payload(folder: Folder) -> dict[str, int | None]:
    return {"person_id": folder.person_id, "patient_pk": folder.patient_pk}


def folder_of_payload(payload: dict[str, Any]) -> Folder:
    return Folder(payload.get("person_id"), payload.get("patient_pk"))


class NoduleService:
    """``settle_now``: register and track in the caller (the demo seeding on the command
    line) instead of in a ``nodules.settle`` job; both run `settle_folder`."""

    def __init__(self, archive: Archive, *, settle_now: bool = False) -> None:
        self.archive = archive
        self.index = archive.index
        self.settle_now = settle_now

    # -- where things live -----------------------------------------------------------------

    def study_facts(self, study_uid: str) -> StudyFacts:
        with self.index.session() as session:
            row = session.execute(
                select(StudyRow.study_date, PatientRow.id, PatientRow.birth_date, PatientRow.sex,
                       PatientRow.patient_id, PatientRow.issuer, PatientRow.name_alphabetic,
                       PatientRow.name_ideographic, PersonRecordRow.person_id)
                .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
                .outerjoin(PersonRecordRow, record_of_patient())
                .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            raise NotFound(f"study {study_uid}")
        folder = Folder(row.person_id, None if row.person_id is not None else row.id)
        return StudyFacts(study_uid, parse_date(row.study_date), folder, row.birth_date or "",
                          row.sex or "", row.patient_id or "", row.issuer or "",
                          row.name_alphabetic or "", row.name_ideographic or "")

    def _folder_studies(self, session: Session, folder: Folder) -> list[tuple[str, str]]:
        """(study_uid, StudyDate) of every study in the folder, oldest first."""
        statement = select(StudyRow.study_uid, StudyRow.study_date).join(
            PatientRow, StudyRow.patient_pk == PatientRow.id)
        if folder.person_id is not None:
            statement = statement.join(PersonRecordRow, record_of_patient()).where(
                PersonRecordRow.person_id == folder.person_id)
        else:
            statement = statement.where(PatientRow.id == folder.patient_pk)
        return [(r.study_uid, r.study_date) for r in
                session.execute(statement.order_by(StudyRow.study_date, StudyRow.id))]

    def follow_record(self, patient_id: str, issuer: str) -> None:
        """A hospital record joined or left a person's folder: its measured nodules follow.

        Why: a hospital may measure a study before the patient keeps the film or an operator
        links the record; those measurements must then appear in the person's folder and be
        tracked against the person's scans from other hospitals, not stay behind in the
        record's own folder. Call after the link change has committed.
        """
        with self.index.session() as session:
            uids = list(session.scalars(select(StudyRow.study_uid).join(
                PatientRow, StudyRow.patient_pk == PatientRow.id).where(
                PatientRow.patient_id == patient_id, PatientRow.issuer == issuer)))
            measured = sorted(set(session.scalars(select(NoduleMeasurementRow.study_uid).where(
                NoduleMeasurementRow.study_uid.in_(uids))))) if uids else []
        if not measured:
            return
        folder = self.study_facts(measured[0]).folder
        old_folders = self._move_to(folder, measured)
        for changed in [folder, *sorted(old_folders, key=settle_key)]:
            self._settle(changed)

    def _move_to(self, folder: Folder, study_uids: list[str]) -> set[Folder]:
        """Put the studies' measurements and assessments in ``folder``; a nodule moves with
        them when all its measurements do, else their automatic links are re-made."""
        old: set[Folder] = set()
        with self.index.write_session() as session:
            rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.study_uid.in_(study_uids))))
            moving = {r.id for r in rows}
            for nodule_id in {r.nodule_id for r in rows if r.nodule_id is not None}:
                nodule = session.get_one(NoduleRow, nodule_id)
                old.add(Folder(nodule.person_id, nodule.patient_pk))
                others = session.scalar(select(NoduleMeasurementRow.id).where(
                    NoduleMeasurementRow.nodule_id == nodule_id,
                    NoduleMeasurementRow.id.not_in(moving)).limit(1))
                if others is None:
                    nodule.person_id, nodule.patient_pk = folder.person_id, folder.patient_pk
                else:
                    for r in rows:
                        if r.nodule_id == nodule_id:
                            r.nodule_id = None if r.link == "auto" else r.nodule_id
            for r in rows:
                r.person_id, r.patient_pk = folder.person_id, folder.patient_pk
            for a in session.scalars(select(NoduleAssessmentRow).where(
                    NoduleAssessmentRow.study_uid.in_(study_uids))):
                a.person_id, a.patient_pk = folder.person_id, folder.patient_pk
            session.commit()
        return old - {folder}

    # -- measuring -------------------------------------------------------------------------

    def measure_click(self, study_uid: str, series_uid: str, instance_uid: str, x: float, y: float,
                      measured_by: str) -> tuple[NoduleMeasurementRow, NoduleRow | None]:
        """Segment the nodule under a click and store it; tracking it and updating the
        exam follow in the folder's settle job."""
        from cloudfilm.domain.segmentation import SegmentationError
        from cloudfilm.services.archive.retrieve import NotStored
        from cloudfilm.services.imaging.volumes import VolumeError
        from cloudfilm.services.nodules.measure import measure_at
        try:
            seg, volume = measure_at(self.archive, study_uid, series_uid, instance_uid, x, y)
        except (SegmentationError, VolumeError) as error:
            raise NoduleError(str(error)) from None
        except NotStored as error:
            raise NotFound(str(error)) from None
        m = NewMeasurement(
            series_uid=series_uid, instance_uid=seg.best_slice_instance_uid,
            centre_mm=tuple(float(v) for v in seg.centre_patient_mm),  # type: ignore[arg-type]
            long_axis_mm=float(seg.long_axis_mm), short_axis_mm=float(seg.short_axis_mm),
            volume_mm3=float(seg.volume_mm3), nodule_type=NoduleType(seg.suggested_type).value,
            method=Method.SEMI_AUTOMATIC.value, outline=dict(seg.outline))
        again = self._same_nodule(study_uid, m)
        if again is not None:
            return self._remeasure(again, m, measured_by, volume)
        return self.add(study_uid, m, measured_by, volume=volume)

    def _same_nodule(self, study_uid: str, m: NewMeasurement) -> int | None:
        """A measurement cloudfilm already made of this nodule on this series: its centre
        lies inside the new one or the new centre inside it (a second click on a nodule
        measures it again; it is not a second nodule)."""
        with self.index.session() as session:
            rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.study_uid == study_uid,
                NoduleMeasurementRow.series_uid == m.series_uid,
                NoduleMeasurementRow.source == "cloudfilm")))
        for row in rows:
            apart = sum((a - b) ** 2 for a, b in zip(
                (row.centre_x, row.centre_y, row.centre_z), m.centre_mm, strict=True)) ** 0.5
            if apart < max(row.long_axis_mm, m.long_axis_mm) / 2:
                return row.id
        return None

    def _remeasure(self, measurement_id: int, m: NewMeasurement, measured_by: str,
                   volume: CtVolume | None) -> tuple[NoduleMeasurementRow, NoduleRow | None]:
        """New geometry for an existing measurement; its nodule, link and the physician's
        corrections (type, lobe, morphology) stay."""
        validate_measurement(m)
        with self.index.write_session() as session:
            row = session.get_one(NoduleMeasurementRow, measurement_id)
            row.instance_uid, row.frame_number = m.instance_uid, m.frame_number
            row.centre_x, row.centre_y, row.centre_z = m.centre_mm
            row.long_axis_mm, row.short_axis_mm = m.long_axis_mm, m.short_axis_mm
            row.volume_mm3, row.method, row.measured_by = m.volume_mm3, m.method, measured_by
            row.outline = json.dumps(m.outline)
            folder = Folder(row.person_id, row.patient_pk)
            session.commit()
        self._settle(folder, current_volume=volume)
        return self.get(measurement_id)

    def add(self, study_uid: str, m: NewMeasurement, measured_by: str, *,
            volume: CtVolume | None = None) -> tuple[NoduleMeasurementRow, NoduleRow | None]:
        """Store one measurement; the settle job attaches it to a nodule and refreshes the
        SR and assessment (returned before: the measurement has no nodule yet)."""
        validate_measurement(m)
        facts = self.study_facts(study_uid)
        with self.index.write_session() as session:
            row = self._insert(session, facts, m, measured_by)
            session.commit()
            measurement_id = row.id
        self._settle(facts.folder, current_volume=volume)
        return self.get(measurement_id)

    def add_from_sr(self, study_uid: str, sop_uid: str,
                    found: list[tuple[NewMeasurement, str]]) -> bool:
        """Store the measurements read from one SR (each already validated) with the SR's
        `SrImportRow`, in one transaction; False if another reader imported it first."""
        facts = self.study_facts(study_uid)
        with self.index.write_session() as session:
            session.add(SrImportRow(sop_uid=sop_uid, study_uid=study_uid,
                                    measurements=len(found)))
            try:
                session.flush()  # the claim first: a concurrent importer waits here
                for m, measured_by in found:
                    self._insert(session, facts, m, measured_by)
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        if found:
            self._settle(facts.folder)
        return True

    @staticmethod
    def _insert(session: Session, facts: StudyFacts, m: NewMeasurement,
                measured_by: str) -> NoduleMeasurementRow:
        row = NoduleMeasurementRow(
            person_id=facts.folder.person_id, patient_pk=facts.folder.patient_pk,
            study_uid=facts.study_uid, series_uid=m.series_uid, instance_uid=m.instance_uid,
            frame_number=m.frame_number, study_date=facts.study_date,
            centre_x=m.centre_mm[0], centre_y=m.centre_mm[1], centre_z=m.centre_mm[2],
            long_axis_mm=m.long_axis_mm, short_axis_mm=m.short_axis_mm,
            volume_mm3=m.volume_mm3, solid_component_mm=m.solid_component_mm,
            nodule_type=m.nodule_type, calcification=m.calcification,
            spiculated=m.spiculated, juxtapleural=m.juxtapleural, airway=m.airway,
            lobe=Lobe.parse(m.lobe).value if m.lobe else None, method=m.method,
            measured_by=measured_by, source=m.source, link="auto",
            sr_instance_uid=m.sr_instance_uid, outline=json.dumps(m.outline))
        if m.tracking_uid:  # an imported SR names its nodule: keep that identity
            nodule = session.scalars(select(NoduleRow).where(
                NoduleRow.tracking_uid == m.tracking_uid, facts.folder.where(NoduleRow))).first()
            if nodule is not None:
                row.nodule_id, row.link = nodule.id, "confirmed"
        session.add(row)
        return row

    def _settle(self, folder: Folder, *, current_volume: CtVolume | None = None) -> None:
        """The folder's measurements changed: settle it in a ``nodules.settle`` job (the
        request only enqueues: registration takes seconds), or now with ``settle_now``."""
        if self.settle_now:
            self.settle_folder(folder, current_volume=current_volume)
        else:
            self.archive.jobs.enqueue(SETTLE_JOB, folder_payload(folder),
                                      dedupe_key=settle_key(folder))

    def retrack(self, study_uid: str) -> None:
        """Match the study's nodules again (in a job, like every change)."""
        self._settle(self.study_facts(study_uid).folder)

    def tracking_pending(self, study_uid: str) -> bool:
        """Is the study's folder waiting for (or in) its settle job?"""
        return self.archive.jobs.pending(settle_key(self.study_facts(study_uid).folder))

    def settle_folder(self, folder: Folder, *, current_volume: CtVolume | None = None) -> None:
        """Track every measured study of the folder, oldest first, then renumber the
        nodules and refresh each study's guideline result and SR (the ``nodules.settle``
        job; idempotent).

        Each study is matched with the previous measured one, so a change anywhere moves
        every later link (a physician may measure this year's scan before last year's):
        the result depends only on the measurements, never on the order they were made in.
        """
        with self.index.session() as session:
            studies = [uid for uid, _ in self._folder_studies(session, folder)]
            # Only this folder's measurements: a record that has since joined a person is
            # settled in the person's folder, by that folder's job.
            measured = set(session.scalars(select(NoduleMeasurementRow.study_uid).where(
                NoduleMeasurementRow.study_uid.in_(studies),
                folder.where(NoduleMeasurementRow)))) if studies else set()
        ordered = [uid for uid in studies if uid in measured]
        for uid in ordered:
            self.track(uid, current_volume=current_volume)
        relabelled = self._tidy_nodules(folder)
        for uid in ordered + sorted(relabelled - set(ordered)):
            self.refresh(uid)

    def _tidy_nodules(self, folder: Folder) -> set[str]:
        """Drop nodules no measurement points at, and number the rest N1, N2, ... by first
        sighting (earliest study, then measurement), so labels do not depend on the order
        of measuring. Returns the studies whose nodules changed label (their SR names them)."""
        with self.index.write_session() as session:
            nodules = {n.id: n for n in session.scalars(select(NoduleRow).where(
                folder.where(NoduleRow)))}
            first: dict[int, tuple[date, int]] = {}
            studies: dict[int, set[str]] = {}
            for m in session.scalars(select(NoduleMeasurementRow).where(
                    NoduleMeasurementRow.nodule_id.in_(list(nodules)))):
                if m.nodule_id is None:  # never: the query names nodules
                    continue
                first[m.nodule_id] = min(first.get(m.nodule_id, (m.study_date, m.id)),
                                         (m.study_date, m.id))
                studies.setdefault(m.nodule_id, set()).add(m.study_uid)
            for nodule_id in set(nodules) - set(first):
                session.delete(nodules.pop(nodule_id))
            changed: set[str] = set()
            for number, nodule_id in enumerate(sorted(first, key=first.__getitem__), 1):
                if nodules[nodule_id].label != f"N{number}":
                    nodules[nodule_id].label = f"N{number}"
                    changed |= studies[nodule_id]
            session.commit()
        return changed

    def get(self, measurement_id: int) -> tuple[NoduleMeasurementRow, NoduleRow | None]:
        with self.index.session() as session:
            row = session.get(NoduleMeasurementRow, measurement_id)
            if row is None:
                raise NotFound(f"measurement {measurement_id}")
            nodule = session.get(NoduleRow, row.nodule_id) if row.nodule_id else None
            session.expunge_all()
        return row, nodule

    def update(self, measurement_id: int, changes: dict[str, Any]) -> NoduleMeasurementRow:
        """A physician corrects type, lobe, calcification or morphology (the axes stay measured)."""
        allowed = {"nodule_type", "calcification", "spiculated", "juxtapleural", "airway", "lobe",
                   "solid_component_mm"}
        unknown = set(changes) - allowed
        if unknown:
            raise NoduleError(f"cannot change {', '.join(sorted(unknown))}")
        row, _ = self.get(measurement_id)
        values = {k: getattr(row, k) for k in allowed} | changes
        validate_measurement(NewMeasurement(
            series_uid=row.series_uid, instance_uid=row.instance_uid,
            centre_mm=(row.centre_x, row.centre_y, row.centre_z), long_axis_mm=row.long_axis_mm,
            short_axis_mm=row.short_axis_mm, volume_mm3=row.volume_mm3, method=row.method,
            **values))
        if values.get("lobe"):
            values["lobe"] = Lobe.parse(values["lobe"]).value
        with self.index.write_session() as session:
            stored = session.get(NoduleMeasurementRow, measurement_id)
            for key, value in values.items():
                setattr(stored, key, value)
            session.commit()
        self.refresh(row.study_uid)
        return self.get(measurement_id)[0]

    def remove(self, measurement_id: int) -> str:
        row, _ = self.get(measurement_id)
        with self.index.write_session() as session:
            session.delete(session.get(NoduleMeasurementRow, measurement_id))
            session.commit()
        self._settle(self.study_facts(row.study_uid).folder)
        return row.study_uid

    # -- tracking --------------------------------------------------------------------------

    def _prior_study(self, session: Session, facts: StudyFacts) -> str | None:
        """The latest earlier study of the folder that has measurements."""
        earlier = [uid for uid, when in self._folder_studies(session, facts.folder)
                   if when and when < facts.study_date.strftime("%Y%m%d")]
        if not earlier:
            return None
        measured = set(session.scalars(select(NoduleMeasurementRow.study_uid).where(
            NoduleMeasurementRow.study_uid.in_(earlier))))
        for uid in reversed(earlier):
            if uid in measured:
                return uid
        return None

    def _to_prior(self, current: list[NoduleMeasurementRow], prior: list[NoduleMeasurementRow],
                  current_volume: CtVolume | None) -> Any:
        """How to map current patient coordinates to the prior's: None (identity) within one
        frame of reference, the rigid registration otherwise, or `UNREGISTERED` when the
        two scans could not be registered: then nothing is matched automatically, because
        scanner coordinates of two scans are unrelated (a physician links by hand)."""
        from cloudfilm.domain.tracking import shares_frame_of_reference
        from cloudfilm.services.imaging.registration import RegistrationError, register_rigid
        from cloudfilm.services.imaging.volumes import VolumeError, load_series_volume
        cur_series, prior_series = current[0].series_uid, prior[0].series_uid
        key = (cur_series, prior_series)
        cached = _TRANSFORMS.get(key)
        if cached is not None:
            return cached
        try:
            cur = current_volume if (current_volume is not None
                                     and current_volume.series_uid == cur_series) else \
                load_series_volume(self.archive, current[0].study_uid, cur_series)
            old = load_series_volume(self.archive, prior[0].study_uid, prior_series)
        except (VolumeError, LookupError) as error:
            log.warning("no automatic tracking: %s", error)
            return UNREGISTERED
        if shares_frame_of_reference(old.frame_of_reference_uid, cur.frame_of_reference_uid):
            transform: Any = IDENTITY
        else:
            try:
                transform = register_rigid(old, cur).current_to_prior
            except RegistrationError as error:
                log.warning("no automatic tracking, registration failed: %s", error)
                return UNREGISTERED
        _TRANSFORMS.put(key, transform)
        return transform

    def track(self, study_uid: str, *, current_volume: CtVolume | None = None) -> dict[str, Any]:
        """Attach this study's automatically linked measurements to nodules of the prior study.

        Confirmed, new and unlinked measurements keep their physician's decision; prior
        nodules they claim are not offered to the others.
        """
        from cloudfilm.domain.tracking import NodulePoint, match_nodules
        facts = self.study_facts(study_uid)
        with self.index.session() as session:
            rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.study_uid == study_uid).order_by(NoduleMeasurementRow.id)))
            prior_uid = self._prior_study(session, facts)
            prior_rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.study_uid == prior_uid,
                NoduleMeasurementRow.nodule_id.is_not(None)))) if prior_uid else []
            session.expunge_all()
        auto = [r for r in rows if r.link == "auto"]
        claimed = {r.nodule_id for r in rows if r.link == "confirmed"}
        candidates = [p for p in prior_rows if p.nodule_id not in claimed]
        pairs: dict[int, tuple[int, float]] = {}
        to_prior = self._to_prior(auto, candidates, current_volume) if auto and candidates else None
        if auto and candidates and to_prior is not UNREGISTERED:
            result = match_nodules(
                [NodulePoint(str(p.id), (p.centre_x, p.centre_y, p.centre_z),
                             (p.long_axis_mm + p.short_axis_mm) / 2) for p in candidates],
                [NodulePoint(str(r.id), (r.centre_x, r.centre_y, r.centre_z),
                             (r.long_axis_mm + r.short_axis_mm) / 2) for r in auto],
                None if to_prior is IDENTITY else to_prior)
            nodule_of = {str(p.id): p.nodule_id for p in candidates if p.nodule_id is not None}
            for match in result.pairs:
                pairs[int(match.current_id)] = (nodule_of[match.prior_id], float(match.distance_mm))
        with self.index.write_session() as session:
            taken = {n for n, _ in pairs.values()}
            for r in auto:
                stored = session.get_one(NoduleMeasurementRow, r.id)
                if r.id in pairs:
                    stored.nodule_id, stored.match_distance_mm = pairs[r.id]
                else:
                    if not self._first_sighting(session, stored) or stored.nodule_id in taken:
                        stored.nodule_id = self._new_nodule(session, facts.folder).id
                    stored.match_distance_mm = None
            session.commit()
        return {"study_uid": study_uid, "prior_study_uid": prior_uid,
                "matched": len(pairs), "measurements": len(rows)}

    @staticmethod
    def _first_sighting(session: Session, row: NoduleMeasurementRow) -> bool:
        """An unmatched measurement keeps its nodule only if no earlier scan shows that
        nodule: a link made against another prior scan must not survive re-tracking."""
        if row.nodule_id is None:
            return False
        return session.scalar(select(NoduleMeasurementRow.id).where(
            NoduleMeasurementRow.nodule_id == row.nodule_id,
            NoduleMeasurementRow.study_date < row.study_date).limit(1)) is None

    def _new_nodule(self, session: Session, folder: Folder) -> NoduleRow:
        """A nodule numbered after the folder's highest label (`_tidy_nodules` renumbers)."""
        labels = session.scalars(select(NoduleRow.label).where(folder.where(NoduleRow)))
        highest = max((int(text[1:]) for text in labels if text[1:].isdigit()), default=0)
        nodule = NoduleRow(person_id=folder.person_id, patient_pk=folder.patient_pk,
                           label=f"N{highest + 1}", tracking_uid=new_uid())
        session.add(nodule)
        session.flush()
        return nodule

    def link(self, measurement_id: int, nodule_id: int) -> None:
        """The physician says: this is the same nodule as ``nodule_id``."""
        row, _ = self.get(measurement_id)
        facts = self.study_facts(row.study_uid)
        with self.index.write_session() as session:
            nodule = session.get(NoduleRow, nodule_id)
            if nodule is None or session.scalar(select(NoduleRow.id).where(
                    NoduleRow.id == nodule_id, facts.folder.where(NoduleRow))) is None:
                raise NoduleError(f"nodule {nodule_id} is not in this patient's folder")
            clash = session.scalar(select(NoduleMeasurementRow.id).where(
                NoduleMeasurementRow.study_uid == row.study_uid,
                NoduleMeasurementRow.nodule_id == nodule_id,
                NoduleMeasurementRow.id != measurement_id))
            if clash is not None:
                raise NoduleError(f"nodule {nodule.label} already has a measurement in this study")
            stored = session.get_one(NoduleMeasurementRow, measurement_id)
            stored.nodule_id, stored.link = nodule_id, "confirmed"
            session.commit()
        self._settle(self.study_facts(row.study_uid).folder)

    def confirm(self, measurement_id: int) -> None:
        """Accept the automatic match as it is."""
        self.get(measurement_id)  # NotFound when there is none
        with self.index.write_session() as session:
            session.get_one(NoduleMeasurementRow, measurement_id).link = "confirmed"
            session.commit()

    def mark_new(self, measurement_id: int) -> None:
        """Not seen before: a nodule of its own, which matching will not change."""
        row, _ = self.get(measurement_id)
        facts = self.study_facts(row.study_uid)
        with self.index.write_session() as session:
            stored = session.get_one(NoduleMeasurementRow, measurement_id)
            stored.nodule_id, stored.link = self._new_nodule(session, facts.folder).id, "new"
            stored.match_distance_mm = None
            session.commit()
        self._settle(self.study_facts(row.study_uid).folder)

    def unlink(self, measurement_id: int) -> None:
        """Not a nodule to follow (or unsure): kept, but outside every trajectory."""
        row, _ = self.get(measurement_id)
        with self.index.write_session() as session:
            stored = session.get_one(NoduleMeasurementRow, measurement_id)
            stored.nodule_id, stored.link, stored.match_distance_mm = None, "unlinked", None
            session.commit()
        self._settle(self.study_facts(row.study_uid).folder)

    # -- the exam's guideline result ------------------------------------------------------

    def _prior_of(self, session: Session, row: NoduleMeasurementRow) -> NoduleMeasurementRow | None:
        if row.nodule_id is None:
            return None
        return session.scalars(select(NoduleMeasurementRow).where(
            NoduleMeasurementRow.nodule_id == row.nodule_id,
            NoduleMeasurementRow.study_date < row.study_date)
            .order_by(NoduleMeasurementRow.study_date.desc())).first()

    def case(self, study_uid: str, guideline: str | None = None, risk: str | None = None,
             **patient: Any) -> dict[str, Any]:
        """The ``advise`` input for a study, built from stored measurements and the patient."""
        facts = self.study_facts(study_uid)
        with self.index.session() as session:
            rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.study_uid == study_uid,
                NoduleMeasurementRow.link != "unlinked").order_by(NoduleMeasurementRow.id)))
            labels: dict[int | None, str] = dict(session.execute(select(NoduleRow.id, NoduleRow.label).where(
                NoduleRow.id.in_([r.nodule_id for r in rows if r.nodule_id]))).all())
            priors = {r.id: self._prior_of(session, r) for r in rows}
            earlier = [uid for uid, when in self._folder_studies(session, facts.folder)
                       if when and when < facts.study_date.strftime("%Y%m%d")]
            stored = session.scalars(select(NoduleAssessmentRow).where(
                NoduleAssessmentRow.study_uid == study_uid)).first()
        previous = json.loads(stored.result).get("input", {}) if stored else {}
        guideline = guideline or previous.get("guideline") or DEFAULT_GUIDELINE
        risk = risk or previous.get("patient", {}).get("risk") or DEFAULT_RISK
        age = age_at(facts.birth_date, facts.study_date)
        nodules = []
        for r in rows:
            prior = priors[r.id]
            nodules.append({
                "id": labels.get(r.nodule_id) or f"M{r.id}", "type": r.nodule_type,
                "long_axis_mm": r.long_axis_mm, "short_axis_mm": r.short_axis_mm,
                "solid_component_mm": r.solid_component_mm, "volume_mm3": r.volume_mm3,
                "lobe": r.lobe, "spiculated": r.spiculated, "juxtapleural": r.juxtapleural,
                "calcification": r.calcification, "airway": r.airway,
                "prior": None if prior is None else {
                    "date": prior.study_date.isoformat(), "long_axis_mm": prior.long_axis_mm,
                    "short_axis_mm": prior.short_axis_mm, "volume_mm3": prior.volume_mm3,
                    "solid_component_mm": prior.solid_component_mm}})
        return {"guideline": guideline,
                "patient": {"age": age, "sex": facts.sex or "U", "risk": risk} | patient,
                "exam": {"date": facts.study_date.isoformat(), "baseline": not earlier},
                "nodules": nodules}

    def assess(self, study_uid: str, guideline: str | None = None,
               risk: str | None = None) -> dict[str, Any] | None:
        """Run the guideline on the study's nodules and store the result (None: no nodules)."""
        if guideline is not None and guideline not in GUIDELINES:
            raise NoduleError(f"guideline must be one of {', '.join(GUIDELINES)}")
        if risk is not None and risk not in ("low", "high"):
            raise NoduleError("risk must be low or high")
        facts = self.study_facts(study_uid)
        data = self.case(study_uid, guideline, risk)
        with self.index.write_session() as session:
            stored = session.scalars(select(NoduleAssessmentRow).where(
                NoduleAssessmentRow.study_uid == study_uid)).first()
            if not data["nodules"]:
                if stored is not None:
                    session.delete(stored)
                    session.commit()
                return None
            try:
                result = advise_json(data)
            except CaseError as error:
                raise NoduleError(str(error)) from None
            result["input"] = data
            window = result.get("next_scan") or {}
            if stored is None:
                stored = NoduleAssessmentRow(study_uid=study_uid)
                session.add(stored)
            stored.person_id, stored.patient_pk = facts.folder.person_id, facts.folder.patient_pk
            stored.study_date, stored.guideline = facts.study_date, data["guideline"]
            stored.category, stored.recommendation = result["category"], result["recommendation"]
            stored.rule = result["rule"]
            stored.next_scan_earliest = _iso(window.get("earliest"))
            stored.next_scan_latest = _iso(window.get("latest"))
            stored.result = json.dumps(result, ensure_ascii=False)
            session.commit()
        return result

    def assessment(self, study_uid: str) -> dict[str, Any] | None:
        with self.index.session() as session:
            stored = session.scalars(select(NoduleAssessmentRow).where(
                NoduleAssessmentRow.study_uid == study_uid)).first()
        return json.loads(stored.result) if stored else None

    def refresh(self, study_uid: str) -> None:
        """After any change: the guideline result, and the SR that carries the numbers."""
        self.assess(study_uid)
        self.write_sr(study_uid)

    def write_sr(self, study_uid: str) -> str | None:
        """Hook for the SR writer (set in `nodule_reports`); returns the SR's SOP UID."""
        return write_study_sr(self, study_uid)

    # -- reading back ---------------------------------------------------------------------

    def sync(self, study_uid: str) -> int:
        """Import measurements from SRs other software stored in the study (e.g. OHIF)."""
        return import_study_srs(self, study_uid)

    def study_measurements(self, study_uid: str) -> list[dict[str, Any]]:
        with self.index.session() as session:
            rows = session.execute(select(NoduleMeasurementRow, NoduleRow.label).outerjoin(
                NoduleRow, NoduleMeasurementRow.nodule_id == NoduleRow.id).where(
                NoduleMeasurementRow.study_uid == study_uid).order_by(NoduleMeasurementRow.id)).all()
            return [measurement_dict(m, label) for m, label in rows]

    def trajectories(self, folder: Folder) -> list[dict[str, Any]]:
        """Each nodule of the folder with its measurements in date order, change and VDT."""
        with self.index.session() as session:
            nodules = list(session.scalars(select(NoduleRow).where(folder.where(NoduleRow))
                                           .order_by(NoduleRow.id)))
            rows = list(session.scalars(select(NoduleMeasurementRow).where(
                NoduleMeasurementRow.nodule_id.in_([n.id for n in nodules]))
                .order_by(NoduleMeasurementRow.study_date, NoduleMeasurementRow.id)))
            session.expunge_all()
        out = []
        for nodule in nodules:
            points = [r for r in rows if r.nodule_id == nodule.id]
            if not points:
                continue
            series = []
            for i, r in enumerate(points):
                item = measurement_dict(r, nodule.label)
                if i:
                    delta = change(to_domain(points[i - 1]), to_domain(r)) \
                        if points[i - 1].study_date < r.study_date else None
                    item["change"] = None if delta is None else {
                        "since": points[i - 1].study_date.isoformat(),
                        "prior_mean_diameter_mm": float(to_domain(points[i - 1]).mean_diameter_mm),
                        "mean_diameter_mm": float(to_domain(r).mean_diameter_mm),
                        "diameter_mm": round(float(delta.diameter_change_mm), 1),
                        "volume_percent": round(delta.volume_change_percent, 1),
                        "vdt_days": None if delta.doubling.days is None
                        else round(delta.doubling.days),
                        "vdt_basis": delta.doubling.basis.value}
                series.append(item)
            out.append({"id": nodule.id, "label": nodule.label,
                        "tracking_uid": nodule.tracking_uid, "measurements": series})
        return out

    def visible_trajectories(self, who: Principal, person_id: int) -> list[dict[str, Any]]:
        """The person's trajectories, keeping only measurements of studies ``who`` may view."""
        from cloudfilm.services.access.policy import Policy
        policy = Policy(self.archive)
        allowed: dict[str, bool] = {}
        out = []
        for nodule in self.trajectories(self.folder_of_person(person_id)):
            kept = []
            for m in nodule["measurements"]:
                if m["study_uid"] not in allowed:
                    allowed[m["study_uid"]] = policy.check(who, Permission.VIEW,
                                                           m["study_uid"]).allowed
                if allowed[m["study_uid"]]:
                    kept.append(m)
            if kept:
                out.append(nodule | {"measurements": kept})
        return out

    def folder_studies(self, folder: Folder) -> list[tuple[str, str]]:
        with self.index.session() as session:
            return self._folder_studies(session, folder)

    def folder_of_person(self, person_id: int) -> Folder:
        with self.index.session() as session:
            if session.get(PersonRow, person_id) is None:
                raise NotFound(f"person {person_id}")
        return Folder(person_id, None)


def _iso(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


