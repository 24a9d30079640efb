"""Nodule measurements in and out of the archive: SR TID 1500, OHIF's SRs, and FHIR.

Why: the nodule tables are cloudfilm's working model, but other systems read DICOM SR
and FHIR. After every change the study's measurements are written as one Comprehensive
3D SR (``Manufacturer`` cloudfilm, in a series whose UID is derived from the study UID,
so there is always one current report); the previous report of that series is removed
after the new one is stored, so a crash leaves at worst two reports, never none.

SRs written by others (OHIF saves TID 1500 via STOW) are imported when the study's
nodules are read: each measurement group becomes a measurement (``source`` sr-import),
tracked like any other, if no longer than 3 cm. A single OHIF "Length" has no short axis; it is stored with the
short axis equal to the long one and ``outline.single_diameter`` set, and shown so.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import pydicom
from sqlalchemy import select

from cloudfilm.domain.fhir_observation import bundle, nodule_observation
from cloudfilm.domain.nodule import Method
from cloudfilm.services.archive.ingest import DERIVED
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.nodules.model import (
    NewMeasurement,
    NoduleError,
    to_domain,
    validate_measurement,
)
from cloudfilm.services.nodules.sr import (
    ImportedMeasurement,
    SrNodule,
    build_nodule_sr,
    centre_from_points,
    read_nodule_sr,
)
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow
from cloudfilm.storage.index.nodule_models import (
    NoduleMeasurementRow,
    NoduleRow,
    SrImportRow,
)

if TYPE_CHECKING:
    from cloudfilm.services.nodules.service import NoduleService

log = logging.getLogger(__name__)

SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
SR_SERIES_NUMBER = 9901
# Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243) and Lung-RADS v2022 define
# a nodule as up to 3 cm; longer lines drawn in a viewer are not imported as nodules.
MAX_NODULE_MM = 30.0
_NAMESPACE = uuid.UUID("6f0c1f5e-8a4e-4d4b-9b0e-6c1f7a1e2d3c")  # cloudfilm nodule reports


def report_series_uid(study_uid: str) -> str:
    """The one series that holds cloudfilm's nodule report for a study (stable per study)."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, study_uid).int)


def _read_header(service: NoduleService, study: str, series: str, sop: str) -> pydicom.Dataset:
    retrieve = service.archive.retrieve
    with retrieve.open(retrieve.instance(study, series, sop)) as stream:
        return pydicom.dcmread(stream, stop_before_pixels=True)


def _outline_points(outline: dict[str, Any], row: NoduleMeasurementRow,
                    image: pydicom.Dataset) -> tuple[tuple[float, float], ...] | None:
    """The contour (semi-automatic) or long-axis line to draw on the image.

    A manual measurement has only a centre and axis lengths: its long axis is drawn along
    the image rows through the centre, so viewers that show 2-D graphics (OHIF) find it.
    """
    contour = outline.get("contour") or outline.get("long_axis")
    if contour and len(contour) >= 2:  # pixel indices -> SCOORD, whose (0, 0) is a corner
        return tuple((float(c) + 0.5, float(r) + 0.5) for c, r in contour)
    try:
        origin = [float(v) for v in image.ImagePositionPatient]
        cosines = [float(v) for v in image.ImageOrientationPatient]
        spacing_row, spacing_col = (float(v) for v in image.PixelSpacing)
    except (AttributeError, ValueError, TypeError):
        return None
    if len(origin) != 3 or len(cosines) != 6:
        return None
    offset = [c - o for c, o in zip((row.centre_x, row.centre_y, row.centre_z), origin, strict=True)]
    col = sum(d * c for d, c in zip(offset, cosines[:3], strict=True)) / spacing_col
    line = sum(d * c for d, c in zip(offset, cosines[3:], strict=True)) / spacing_row
    half = row.long_axis_mm / 2 / spacing_col
    return ((col - half + 0.5, line + 0.5), (col + half + 0.5, line + 0.5))


def _store(service: NoduleService, ds: pydicom.Dataset) -> None:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    archive = service.archive
    staged = archive.blobs.stage_bytes(buffer.getvalue())
    outcome = archive.ingest.ingest_staged([staged], admission=DERIVED)[0]
    if not outcome.ok:
        raise RuntimeError(f"the nodule SR was not stored: {outcome}")


def _report_instances(service: NoduleService, study_uid: str) -> list[str]:
    """The study's cloudfilm nodule SRs, the one stored last first."""
    with service.index.session() as session:
        return list(session.scalars(
            select(InstanceRow.sop_uid).join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
            .where(SeriesRow.series_uid == report_series_uid(study_uid))
            .order_by(InstanceRow.id.desc())))


def _followed(service: NoduleService, study_uid: str) -> list[Any]:
    """(measurement, nodule label, tracking UID) of the study's followed nodules."""
    with service.index.session() as session:
        rows = session.execute(
            select(NoduleMeasurementRow, NoduleRow.label, NoduleRow.tracking_uid)
            .join(NoduleRow, NoduleMeasurementRow.nodule_id == NoduleRow.id)
            .where(NoduleMeasurementRow.study_uid == study_uid,
                   NoduleMeasurementRow.link != "unlinked")
            .order_by(NoduleMeasurementRow.id)).all()
        session.expunge_all()
    return list(rows)


def write_study_sr(service: NoduleService, study_uid: str) -> str | None:
    """Replace the study's nodule report with one carrying its current measurements."""
    rows = _followed(service, study_uid)
    previous = _report_instances(service, study_uid)
    sop_uid = None
    if rows:
        headers = {}
        nodules = []
        for row, label, tracking_uid in rows:
            if row.instance_uid not in headers:
                headers[row.instance_uid] = _read_header(service, study_uid, row.series_uid,
                                                         row.instance_uid)
            nodules.append(SrNodule(to_domain(row), label, tracking_uid, _outline_points(
                json.loads(row.outline or "{}"), row, headers[row.instance_uid])))
        authors = sorted({row.measured_by for row, _, _ in rows})
        sr = build_nodule_sr(list(headers.values()), nodules, series_number=SR_SERIES_NUMBER,
                             instance_number=len(previous) + 1, author="; ".join(authors)[:64],
                             series_instance_uid=report_series_uid(study_uid),
                             series_description="cloudfilm nodule measurements")
        _store(service, sr)
        sop_uid = str(sr.SOPInstanceUID)
        with service.index.write_session() as session:
            for row, _, _ in rows:  # an imported one keeps pointing at the SR it came from
                if row.source == "cloudfilm":
                    session.get_one(NoduleMeasurementRow, row.id).sr_instance_uid = sop_uid
            session.commit()
    # One SR per study: the one stored last stays. Two writers at once (settle jobs of a
    # record's old and new folder) both keep that same one, never both or neither.
    stale = _report_instances(service, study_uid)[1:] if sop_uid else previous
    for old in stale:
        try:
            service.archive.deletion.delete(study_uid, report_series_uid(study_uid), old)
        except NotStored:  # the other writer deleted it first
            continue
    return sop_uid


def _study_srs(service: NoduleService, study_uid: str) -> list[tuple[str, str]]:
    """(series, SOP) of every SR in the study that cloudfilm did not write."""
    with service.index.session() as session:
        return [(r.series_uid, r.sop_uid) for r in session.execute(
            select(SeriesRow.series_uid, InstanceRow.sop_uid)
            .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
            .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
            .where(StudyRow.study_uid == study_uid,
                   InstanceRow.sop_class_uid.like(SR_CLASS_PREFIX + "%"),
                   SeriesRow.series_uid != report_series_uid(study_uid)))]


def import_study_srs(service: NoduleService, study_uid: str) -> int:
    """Import the measurement groups of SRs not read before (e.g. saved in OHIF); returns
    how many measurements this call imported. Each SR is read once, whichever node or
    request comes first (its `SrImportRow` is written with its measurements)."""
    candidates = _study_srs(service, study_uid)
    if not candidates:
        return 0
    with service.index.session() as session:
        done = set(session.scalars(select(SrImportRow.sop_uid).where(
            SrImportRow.study_uid == study_uid)))
        done |= set(session.scalars(select(NoduleMeasurementRow.sr_instance_uid).where(
            NoduleMeasurementRow.study_uid == study_uid,  # imported before revision 0012
            NoduleMeasurementRow.source == "sr-import")))
    imported = 0
    for series_uid, sop_uid in candidates:
        if sop_uid in done:
            continue
        ds = _read_header(service, study_uid, series_uid, sop_uid)
        try:
            found = [] if str(ds.get("Manufacturer", "")) == "cloudfilm" else read_nodule_sr(ds)
        except (ValueError, AttributeError, KeyError) as error:
            log.info("SR %s has no readable measurements: %s", sop_uid, error)
            found = []
        measurements = [m for m in (_measurement(service, study_uid, sop_uid, item)
                                    for item in found) if m is not None]
        if service.add_from_sr(study_uid, sop_uid, measurements):
            imported += len(measurements)
    return imported


def _measurement(service: NoduleService, study_uid: str, sop_uid: str,
                 item: ImportedMeasurement) -> tuple[NewMeasurement, str] | None:
    """One SR measurement group as a measurement of the study (and who made it); None if it
    is not a nodule measurement that can be placed (no length, longer than 3 cm, no usable
    image)."""
    long_axis = item.long_axis_mm
    if long_axis is None or not item.instance_uid or not item.series_uid:
        return None
    if long_axis > MAX_NODULE_MM:
        return None  # a mass or some other length (e.g. a chest width), not a nodule
    try:
        image = _read_header(service, study_uid, item.series_uid, item.instance_uid)
        centre = item.centre_in_space_mm or centre_from_points(item.points, image,
                                                               item.frame_number)
    except (LookupError, ValueError) as error:
        log.info("SR %s: measurement without a usable image: %s", sop_uid, error)
        return None
    single = item.short_axis_mm is None
    short = long_axis if item.short_axis_mm is None else min(item.short_axis_mm, long_axis)
    outline: dict[str, Any] = {"instance_uid": item.instance_uid,  # SCOORD -> pixel indices
                               "long_axis": [[p[0] - 0.5, p[1] - 0.5] for p in item.points[:2]]}
    if single:
        outline["single_diameter"] = True
    measurement = NewMeasurement(
        series_uid=item.series_uid, instance_uid=item.instance_uid,
        frame_number=item.frame_number, centre_mm=centre,
        long_axis_mm=max(long_axis, short), short_axis_mm=short,
        volume_mm3=item.volume_mm3,
        nodule_type=item.nodule_type.value if item.nodule_type else "solid",
        lobe=item.lobe.value if item.lobe else None,
        method=(item.method or Method.MANUAL).value, outline=outline,
        source="sr-import", sr_instance_uid=sop_uid)
    try:
        validate_measurement(measurement)
    except NoduleError as error:
        log.info("SR %s: measurement not imported: %s", sop_uid, error)
        return None
    return measurement, item.observer or "OHIF"


def study_fhir_bundle(service: NoduleService, study_uid: str) -> dict[str, Any]:
    """A FHIR R4 collection Bundle: one Observation per followed nodule of the study."""
    facts = service.study_facts(study_uid)
    subject = (f"Patient/person-{facts.folder.person_id}" if facts.folder.person_id is not None
               else f"Patient/record-{facts.folder.patient_pk}")
    rows = _followed(service, study_uid)
    return bundle([nodule_observation(to_domain(row), label=label, tracking_uid=tracking_uid,
                                      patient_reference=subject, imaging_study_reference=None,
                                      performer=None, resource_id=f"nodule-measurement-{row.id}")
                   for row, label, tracking_uid in rows])
