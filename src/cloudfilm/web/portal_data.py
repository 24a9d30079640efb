"""What the portal pages show, read from the index: study details, SR text, priors, shares.

Why here and not in the route handlers: these are plain synchronous reads (run in a
thread by the pages); authorisation is decided before they are called, by the policy
(services/access/policy.py), so nothing here widens what a caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
import pydicom
from sqlalchemy import func, select

from cloudfilm.domain.access import Audience, Permission, Principal
from cloudfilm.services.audit.record import AuditRecord
from cloudfilm.services.access.people import (
    PDF_CLASS, PeopleService, TimelineStudy, _first_text, _iso_date, _iso_time, document_kind,
)
from cloudfilm.services.access.policy import Policy, utcnow
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.storage.index.access_models import PersonRecordRow, PersonRow
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

# DICOM JSON tags of SR content items (PS3.3 C.17.3)
VALUE_TYPE, CONCEPT_NAME, CONTENT_SEQUENCE = "0040A040", "0040A043", "0040A730"
TEXT_VALUE, CONCEPT_CODE, MEASURED_VALUE = "0040A160", "0040A168", "0040A300"
NUMERIC_VALUE, UNITS = "0040A30A", "004008EA"
DATETIME, DATE, TIME, PERSON_NAME, UID_REF = "0040A120", "0040A121", "0040A122", "0040A123", \
    "0040A124"
CODE_VALUE, CODE_MEANING = "00080100", "00080104"
SR_MAX_DEPTH, SR_MAX_ITEMS = 12, 2000


@dataclass
class SrItem:
    """One SR content item as text: ``kind`` is text, code, num, date, person, uid,
    container or reference (a reference has no text of its own)."""

    label: str
    value: str
    kind: str
    children: list["SrItem"] = field(default_factory=list)


@dataclass
class DocumentInfo:
    sop_uid: str
    series_uid: str
    kind: str  # report | pdf | secondary-capture
    title: str
    href: str  # a page or image the browser can open
    sr: list[SrItem] = field(default_factory=list)


@dataclass
class SeriesInfo:
    series_uid: str
    number: int | None
    modality: str
    description: str
    images: int
    kind: str  # image | report | pdf | secondary-capture


@dataclass
class StudyDetail:
    study_uid: str
    date: str
    time: str
    hospital: str
    description: str
    modalities: list[str]
    accession: str
    patient_id: str
    issuer: str
    person_id: int | None
    series: list[SeriesInfo]
    documents: list[DocumentInfo]


def _values(attrs: dict[str, Any], tag: str) -> list[Any]:
    element = attrs.get(tag)
    return list(element.get("Value") or []) if isinstance(element, dict) else []


def _meaning(attrs: dict[str, Any], tag: str) -> str:
    codes = _values(attrs, tag)
    if not codes or not isinstance(codes[0], dict):
        return ""
    return _first_text(codes[0], CODE_MEANING) or _first_text(codes[0], CODE_VALUE)


def _item_value(item: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of one content item's value."""
    value_type = _first_text(item, VALUE_TYPE).upper()
    if value_type == "TEXT":
        return "text", _first_text(item, TEXT_VALUE)
    if value_type == "CODE":
        return "code", _meaning(item, CONCEPT_CODE)
    if value_type == "NUM":
        measured = _values(item, MEASURED_VALUE)
        if not measured or not isinstance(measured[0], dict):
            return "num", ""
        number = _first_text(measured[0], NUMERIC_VALUE)
        unit = _values(measured[0], UNITS)
        symbol = ""
        if unit and isinstance(unit[0], dict):
            symbol = _first_text(unit[0], CODE_VALUE) or _first_text(unit[0], CODE_MEANING)
        return "num", f"{number} {symbol}".strip() if symbol not in ("1", "{ratio}") else number
    if value_type == "DATETIME":
        return "date", _first_text(item, DATETIME)
    if value_type == "DATE":
        return "date", _iso_date(_first_text(item, DATE))
    if value_type == "TIME":
        return "date", _iso_time(_first_text(item, TIME))
    if value_type == "PNAME":
        return "person", _first_text(item, PERSON_NAME).replace("^", " ").strip()
    if value_type == "UIDREF":
        return "uid", _first_text(item, UID_REF)
    if value_type == "CONTAINER":
        return "container", ""
    return "reference", ""


def sr_items(attrs: dict[str, Any], depth: int = 0,
             budget: list[int] | None = None) -> list[SrItem]:
    """The ContentSequence of an SR (DICOM JSON) as nested text items, depth- and size-capped."""
    budget = budget if budget is not None else [SR_MAX_ITEMS]
    found: list[SrItem] = []
    if depth >= SR_MAX_DEPTH:
        return found
    for item in _values(attrs, CONTENT_SEQUENCE):
        if not isinstance(item, dict) or budget[0] <= 0:
            break
        budget[0] -= 1
        kind, value = _item_value(item)
        found.append(SrItem(_meaning(item, CONCEPT_NAME), value, kind,
                            sr_items(item, depth + 1, budget)))
    return found


def _series_kind(sop_class: str, modality: str) -> str:
    return document_kind(sop_class) or ("report" if modality == "SR" else "image")


def study_detail(archive: "Archive", study_uid: str) -> StudyDetail | None:
    """A study with its series and documents (the caller's VIEW was already checked)."""
    with archive.index.session() as session:
        row = session.execute(
            select(StudyRow, PatientRow.patient_id, PatientRow.issuer)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            return None
        study, patient_id, issuer = row
        person_id = session.scalars(select(PersonRecordRow.person_id).where(
            PersonRecordRow.patient_id == patient_id, PersonRecordRow.issuer == issuer)).first()
        series_rows = session.execute(
            select(SeriesRow.id, SeriesRow.series_uid, SeriesRow.series_number, SeriesRow.modality,
                   SeriesRow.description, func.count(InstanceRow.id),
                   func.min(InstanceRow.sop_class_uid))
            .join(InstanceRow, InstanceRow.series_pk == SeriesRow.id)
            .where(SeriesRow.study_pk == study.id)
            .group_by(SeriesRow.id, SeriesRow.series_uid, SeriesRow.series_number,
                      SeriesRow.modality, SeriesRow.description)
            .order_by(SeriesRow.series_number, SeriesRow.id)).all()
        documents = _documents(session, study.id, study_uid)
        attrs = orjson.loads(study.attrs or "{}")
    series = [SeriesInfo(r[1], r[2], r[3], r[4], int(r[5]), _series_kind(r[6] or "", r[3]))
              for r in series_rows]
    modalities = sorted({s.modality for s in series if s.modality})
    return StudyDetail(study_uid, _iso_date(study.study_date), _iso_time(study.study_time),
                       _first_text(attrs, "00080080"), study.description, modalities,
                       study.accession_number, patient_id, issuer, person_id, series, documents)


def _documents(session: Any, study_pk: int, study_uid: str) -> list[DocumentInfo]:
    rows = session.execute(
        select(InstanceRow.sop_uid, InstanceRow.sop_class_uid, InstanceRow.metadata_json,
               SeriesRow.series_uid, SeriesRow.description, SeriesRow.modality)
        .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
        .where(SeriesRow.study_pk == study_pk)
        .order_by(SeriesRow.series_number, SeriesRow.id, InstanceRow.instance_number,
                  InstanceRow.id)).all()
    found: list[DocumentInfo] = []
    for sop, sop_class, metadata, series_uid, description, modality in rows:
        kind = document_kind(sop_class or "")
        if kind is None:
            continue
        attrs = orjson.loads(metadata or b"{}")
        title = _first_text(attrs, "00420010") or _meaning(attrs, CONCEPT_NAME) or description
        if kind == "pdf":
            href = f"/studies/{study_uid}/documents/{series_uid}/{sop}"
        else:
            href = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}/rendered"
        found.append(DocumentInfo(sop, series_uid, kind, title, href,
                                  sr_items(attrs) if kind == "report" else []))
    return found


def person_name(archive: "Archive", person_id: int) -> str:
    """A person's display name, else the name on their first hospital record."""
    with archive.index.session() as session:
        person = session.get(PersonRow, person_id)
        if person is None:
            return ""
        if person.display_name:
            return person.display_name
        attrs = session.scalars(select(PatientRow.attrs).join(PersonRecordRow, (
            PersonRecordRow.patient_id == PatientRow.patient_id)
            & (PersonRecordRow.issuer == PatientRow.issuer))
            .where(PersonRecordRow.person_id == person_id)).first()
    return _first_text(orjson.loads(attrs or "{}"), "00100010").replace("^", " ").strip()


def person_exists(archive: "Archive", person_id: int) -> bool:
    with archive.index.session() as session:
        return session.get(PersonRow, person_id) is not None


def _moment(study: TimelineStudy | StudyDetail) -> tuple[str, str]:
    return study.date or "", study.time or ""


def prior_study(archive: "Archive", principal: Principal, study_uid: str) -> str | None:
    """The most recent earlier study of the same kind (CT for a CT) that ``principal`` may
    view: of the same person, or of the same hospital record when no person is linked."""
    current = study_detail(archive, study_uid)
    if current is None or not current.date:
        return None
    wanted = {"CT"} if "CT" in current.modalities else set(current.modalities) - {"SR", "DOC",
                                                                                     "OT"}
    if not wanted:
        return None
    if current.person_id is not None:
        candidates = PeopleService(archive).timeline(principal, current.person_id)
    else:
        candidates = _record_studies(archive, principal, current.patient_id, current.issuer)
    earlier = [s for s in candidates if s.study_uid != study_uid and s.date
               and _moment(s) < _moment(current) and wanted & set(s.modalities)]
    return max(earlier, key=_moment).study_uid if earlier else None


def _record_studies(archive: "Archive", principal: Principal, patient_id: str,
                    issuer: str) -> list[TimelineStudy]:
    """Studies of one hospital record the principal may view (for unlinked records)."""
    with archive.index.session() as session:
        uids = list(session.scalars(select(StudyRow.study_uid).join(
            PatientRow, StudyRow.patient_pk == PatientRow.id).where(
            PatientRow.patient_id == patient_id, PatientRow.issuer == issuer)))
    allowed = Policy(archive).check_many(principal, Permission.VIEW, uids)
    found = []
    for uid in uids:
        if allowed[uid].allowed and (detail := study_detail(archive, uid)) is not None:
            found.append(TimelineStudy(uid, detail.date, detail.time, detail.hospital,
                                       detail.modalities, detail.description, len(detail.series),
                                       sum(s.images for s in detail.series), detail.patient_id,
                                       detail.issuer, detail.accession))
    return found


@dataclass
class SharedPerson:
    """A patient whose grants name this physician, and what those grants let them see."""

    person_id: int
    name: str
    studies: list[TimelineStudy]
    valid_until: date | None
    forever: bool


def shared_with_physician(archive: "Archive", principal: Principal) -> list[SharedPerson]:
    """The persons whose active physician grants name ``principal``, newest study first."""
    now = utcnow()
    grants = [g for g in Policy(archive).grants(principal)
              if g.audience is Audience.PHYSICIAN and g.active(now)]
    by_person: dict[int, list[Any]] = {}
    for grant in grants:
        by_person.setdefault(grant.person_id, []).append(grant)
    people = PeopleService(archive)
    found = []
    for person_id, person_grants in by_person.items():
        studies = people.timeline(principal, person_id)
        if not studies:
            continue
        ends = [g.valid_until for g in person_grants]
        forever = any(end is None for end in ends)
        found.append(SharedPerson(person_id, person_name(archive, person_id), studies,
                                  None if forever else max(e for e in ends if e), forever))
    return sorted(found, key=lambda p: max(_moment(s) for s in p.studies), reverse=True)


def access_log(archive: "Archive", persons: set[int], limit: int = 50) -> list[AuditRecord]:
    """Newest records about these persons (the owner's "who looked at my images")."""
    if not persons:
        return []
    return archive.audit.query(person_ids=persons, limit=limit, newest_first=True)


def persons_for_record(archive: "Archive", patient_id: str, issuer: str | None) -> list[int]:
    """The persons a hospital record (IssuerOfPatientID optional) is linked to."""
    statement = select(PersonRecordRow.person_id).where(PersonRecordRow.patient_id == patient_id)
    if issuer is not None:
        statement = statement.where(PersonRecordRow.issuer == issuer)
    with archive.index.session() as session:
        return sorted(set(session.scalars(statement)))


def pdf_bytes(archive: "Archive", study: str, series: str, sop: str) -> bytes | None:
    """The PDF inside an Encapsulated PDF instance (its even-length pad byte removed)."""
    try:
        instance = archive.retrieve.instance(study, series, sop)
    except NotStored:
        return None
    if instance.sop_class_uid != PDF_CLASS:
        return None
    ds = pydicom.dcmread(archive.retrieve.path(instance))
    data = bytes(ds.get("EncapsulatedDocument", b"") or b"")
    length = int(ds.get("EncapsulatedDocumentLength", 0) or 0)
    if 0 < length <= len(data):
        return data[:length]
    return data[:-1] if data.endswith(b"\x00") else data
