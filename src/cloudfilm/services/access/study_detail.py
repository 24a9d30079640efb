"""One study as the portal shows it: its series, its documents and the text of its reports.

Why a service: the study page, the case folder and a share link's landing page read the
same study; they get plain frozen values and never a session or a row. Authorisation is
decided before these are called (services/access/policy.py), so nothing here widens what
a caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pydicom
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloudfilm.services.access.people import (
    PDF_CLASS,
    _first_text,
    _iso_date,
    _iso_time,
    document_kind,
)
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.storage.index.access_models import PersonRecordRow
from cloudfilm.storage.index.ai_models import AiResultRow
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow
from cloudfilm.storage.index.queries import record_of_patient

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


@dataclass(frozen=True)
class SrItem:
    """One SR content item as text: ``kind`` is text, code, num, date, person, uid,
    container or reference (a reference has no text of its own)."""

    label: str
    value: str
    kind: str
    children: tuple[SrItem, ...] = ()


@dataclass(frozen=True)
class DocumentInfo:
    sop_uid: str
    series_uid: str
    kind: str  # report | pdf | secondary-capture
    title: str
    href: str  # a page or image the browser can open
    sr: tuple[SrItem, ...] = ()
    ai_result: bool = False  # an AI service's SR (issue 15): clinicians only


@dataclass(frozen=True)
class SeriesInfo:
    series_uid: str
    number: int | None
    modality: str
    description: str
    images: int
    kind: str  # image | report | pdf | secondary-capture
    ai_result: bool = False  # an AI service's SR/SEG series (issue 15): clinicians only


@dataclass(frozen=True)
class StudyDetail:
    study_uid: str
    date: str
    time: str
    hospital: str
    description: str
    modalities: tuple[str, ...]
    accession: str
    patient_id: str
    issuer: str
    person_id: int | None
    series: tuple[SeriesInfo, ...]
    documents: tuple[DocumentInfo, ...]


def _values(attrs: dict[str, Any], tag: str) -> list[Any]:
    element = attrs.get(tag)
    return list(element.get("Value") or []) if isinstance(element, dict) else []


def _meaning(attrs: dict[str, Any], tag: str) -> str:
    codes = _values(attrs, tag)
    if not codes or not isinstance(codes[0], dict):
        return ""
    return _first_text(codes[0], CODE_MEANING) or _first_text(codes[0], CODE_VALUE)


def _number(item: dict[str, Any]) -> str:
    """A NUM item's value with its unit (PS3.3 C.18.1), ratios without one."""
    measured = _values(item, MEASURED_VALUE)
    if not measured or not isinstance(measured[0], dict):
        return ""
    number = _first_text(measured[0], NUMERIC_VALUE)
    unit = _values(measured[0], UNITS)
    symbol = ""
    if unit and isinstance(unit[0], dict):
        symbol = _first_text(unit[0], CODE_VALUE) or _first_text(unit[0], CODE_MEANING)
    return f"{number} {symbol}".strip() if symbol not in ("1", "{ratio}") else number


def _item_value(item: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of one content item's value."""
    value_type = _first_text(item, VALUE_TYPE).upper()
    if value_type == "TEXT":
        return "text", _first_text(item, TEXT_VALUE)
    if value_type == "CODE":
        return "code", _meaning(item, CONCEPT_CODE)
    if value_type == "NUM":
        return "num", _number(item)
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
             budget: list[int] | None = None) -> tuple[SrItem, ...]:
    """The ContentSequence of an SR (DICOM JSON) as nested text items, depth- and size-capped."""
    budget = budget if budget is not None else [SR_MAX_ITEMS]
    found: list[SrItem] = []
    if depth >= SR_MAX_DEPTH:
        return ()
    for item in _values(attrs, CONTENT_SEQUENCE):
        if not isinstance(item, dict) or budget[0] <= 0:
            break
        budget[0] -= 1
        kind, value = _item_value(item)
        found.append(SrItem(_meaning(item, CONCEPT_NAME), value, kind,
                            sr_items(item, depth + 1, budget)))
    return tuple(found)


def _series_kind(sop_class: str, modality: str) -> str:
    return document_kind(sop_class) or ("report" if modality == "SR" else "image")


def study_detail(archive: Archive, study_uid: str) -> StudyDetail | None:
    """A study with its series and documents (the caller's VIEW was already checked)."""
    with archive.index.session() as session:
        row = session.execute(
            select(StudyRow, PatientRow.patient_id, PatientRow.issuer, PersonRecordRow.person_id)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .outerjoin(PersonRecordRow, record_of_patient())
            .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            return None
        study, patient_id, issuer, person_id = row
        ai = set(session.execute(select(AiResultRow.sop_uid, AiResultRow.series_uid)
                                 .where(AiResultRow.study_uid == study_uid)).tuples())
        series = _series(session, study.id, {s for _, s in ai})
        documents = _documents(session, study.id, study_uid, {sop for sop, _ in ai})
        attrs = orjson.loads(study.attrs or "{}")
    modalities = tuple(sorted({s.modality for s in series if s.modality}))
    return StudyDetail(study_uid, _iso_date(study.study_date), _iso_time(study.study_time),
                       _first_text(attrs, "00080080"), study.description, modalities,
                       study.accession_number, patient_id, issuer, person_id, series, documents)


def _series(session: Session, study_pk: int, ai_series: set[str]) -> tuple[SeriesInfo, ...]:
    rows = session.execute(
        select(SeriesRow.id, SeriesRow.series_uid, SeriesRow.series_number, SeriesRow.modality,
               SeriesRow.description, func.count(InstanceRow.id),
               func.min(InstanceRow.sop_class_uid))
        .join(InstanceRow, InstanceRow.series_pk == SeriesRow.id)
        .where(SeriesRow.study_pk == study_pk)
        .group_by(SeriesRow.id, SeriesRow.series_uid, SeriesRow.series_number,
                  SeriesRow.modality, SeriesRow.description)
        .order_by(SeriesRow.series_number, SeriesRow.id)).all()
    return tuple(SeriesInfo(r[1], r[2], r[3], r[4], int(r[5]), _series_kind(r[6] or "", r[3]),
                            r[1] in ai_series) for r in rows)


def _documents(session: Session, study_pk: int, study_uid: str,
               ai_sops: set[str]) -> tuple[DocumentInfo, ...]:
    rows = session.execute(
        select(InstanceRow.sop_uid, InstanceRow.sop_class_uid, InstanceRow.metadata_json,
               SeriesRow.series_uid, SeriesRow.description, SeriesRow.modality)
        .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
        .where(SeriesRow.study_pk == study_pk)
        .order_by(SeriesRow.series_number, SeriesRow.id, InstanceRow.instance_number,
                  InstanceRow.id)).all()
    found: list[DocumentInfo] = []
    for sop, sop_class, metadata, series_uid, description, _modality in rows:
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
                                  sr_items(attrs) if kind == "report" else (), sop in ai_sops))
    return tuple(found)


def pdf_bytes(archive: Archive, study: str, series: str, sop: str) -> bytes | None:
    """The PDF inside an Encapsulated PDF instance (its even-length pad byte removed)."""
    try:
        instance = archive.retrieve.instance(study, series, sop)
    except NotStored:
        return None
    if instance.sop_class_uid != PDF_CLASS:
        return None
    with archive.retrieve.open(instance) as stream:
        ds = pydicom.dcmread(stream)
    data = bytes(ds.get("EncapsulatedDocument", b"") or b"")
    length = int(ds.get("EncapsulatedDocumentLength", 0) or 0)
    if 0 < length <= len(data):
        return data[:length]
    return data[:-1] if data.endswith(b"\x00") else data
