"""Export studies for CD, USB or download in the IHE PDI layout, as a streamed zip.

Layout (IHE RAD TF-3 §4.47.4.1.2, PS3.11 Annex D general purpose profiles, PS3.10 §8):

    DICOMDIR                                   the Basic Directory (services/exchange/dicomdir.py)
    README.TXT                                 what is on the medium and how to view it
    INDEX.HTM                                  XHTML 1.0 Strict, no scripts, links previews
    DICOM/P0000001/S0000001/SE000001/I0000001  instances, byte for byte as stored
    IHE_PDI/P0000001/S0000001/SE000001.JPG     one preview per series

File IDs use ISO 9660 level 1 names (PS3.10 §8.5: at most 8 characters of
[A-Z0-9_], no extension, at most 8 levels) so the tree can be burnt as is. The
instances are copied as stored: the media profile is STD-GEN-CD/USB when they are
Explicit VR Little Endian, and the matching compressed profile otherwise (e.g.
STD-GEN-USB-JPEG); nothing is transcoded.

The DICOMDIR is built first from the index alone (metadata JSON, no file reads), then
the zip is written progressively to a non-seekable sink (entries carry data
descriptors), so neither the HTTP response nor the CLI ever holds the archive.
"""

from __future__ import annotations

import html
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS
from sqlalchemy import select

from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.dicomdir import DirectoryRecord, encode_dicomdir
from cloudfilm.storage.blobs import BlobStore
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow

COPY_CHUNK = 1 << 20
PREVIEW_SIZE = (256, 256)
APPLICATION = "cloudfilm"


class UnknownStudies(LookupError):
    def __init__(self, uids: list[str]) -> None:
        super().__init__(f"study {', '.join(uids)} not found")
        self.uids = uids


class UnknownPatient(LookupError):
    def __init__(self, patient_id: str, issuer: str | None) -> None:
        where = f" (issuer {issuer})" if issuer else ""
        super().__init__(f"patient {patient_id}{where} not found")


class AmbiguousPatient(LookupError):
    """The PatientID exists under several issuers: exporting them together could mix people."""

    def __init__(self, patient_id: str, issuers: list[str]) -> None:
        super().__init__(f"patient {patient_id} exists for several issuers "
                         f"({', '.join(repr(i) for i in issuers)}); pass an issuer")


# -- the plan: what goes where ----------------------------------------------------------


@dataclass
class SeriesEntry:
    record: DirectoryRecord
    path: tuple[str, ...]
    modality: str
    number: str
    description: str
    count: int = 0
    images: list[str] = field(default_factory=list)  # blob keys of instances with pixels

    @property
    def preview_name(self) -> str:
        return "IHE_PDI/" + "/".join(self.path) + ".JPG"


@dataclass
class StudyEntry:
    record: DirectoryRecord
    path: tuple[str, ...]
    date: str
    description: str
    accession: str
    series: list[SeriesEntry] = field(default_factory=list)


@dataclass
class PatientEntry:
    record: DirectoryRecord
    path: tuple[str, ...]
    name: str
    patient_id: str
    studies: list[StudyEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportFile:
    name: str
    blob_key: str
    size: int


@dataclass
class ExportPlan:
    patients: list[PatientEntry] = field(default_factory=list)
    files: list[ExportFile] = field(default_factory=list)

    @property
    def studies(self) -> list[StudyEntry]:
        return [s for p in self.patients for s in p.studies]

    def dicomdir(self) -> bytes:
        return encode_dicomdir([p.record for p in self.patients])


def _component(prefix: str, number: int) -> str:
    """An 8-character ISO 9660 name: prefix plus zero-padded number (PS3.10 §8.5)."""
    return f"{prefix}{number:0{8 - len(prefix)}d}"


# -- directory record keys (PS3.3 F.5) ----------------------------------------------------

_PATIENT_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
_STUDY_KEYS = ("StudyDate", "StudyTime", "StudyDescription", "StudyInstanceUID", "StudyID",
               "AccessionNumber")
_SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription")
# Type 1 keys the archive may lack: invented like dcmmkdir's --invent does, so the
# DICOMDIR stays valid; the instance files themselves are never changed.
_INVENTED = {"PatientID": "UNKNOWN", "StudyDate": "19000101", "StudyTime": "000000",
             "StudyID": "1", "Modality": "OT"}
_TYPE2 = ("PatientName", "StudyDescription", "AccessionNumber")
_LEAF_TYPES = {
    "1.2.840.10008.5.1.4.1.1.104.": "ENCAP DOC",
    "1.2.840.10008.5.1.4.1.1.88.59": "KEY OBJECT DOC",
    "1.2.840.10008.5.1.4.1.1.88.": "SR DOCUMENT",
    "1.2.840.10008.5.1.4.1.1.11.": "PRESENTATION",
    "1.2.840.10008.5.1.4.1.1.9.": "WAVEFORM",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT DOSE",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT STRUCTURE SET",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT PLAN",
    "1.2.840.10008.5.1.4.1.1.4.2": "SPECTROSCOPY",
}


def leaf_record_type(sop_class_uid: str) -> str:
    """The fourth-level record type of PS3.3 Table F.4-1 for a SOP Class (IMAGE by default)."""
    for prefix, record_type in _LEAF_TYPES.items():
        if sop_class_uid == prefix or (prefix.endswith(".") and sop_class_uid.startswith(prefix)):
            return record_type
    return "IMAGE"


def _without_bulk(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if "BulkDataURI" not in v}


def _keys(meta: dict[str, Any], keywords: tuple[str, ...]) -> Dataset:
    """The named attributes of an instance's DICOM JSON, with invented type 1 values."""
    from pydicom.datadict import tag_for_keyword

    wanted = {f"{tag_for_keyword(k):08X}" for k in keywords}
    ds = Dataset.from_json(_without_bulk({k: v for k, v in meta.items() if k in wanted}))
    for keyword in keywords:
        if keyword in _INVENTED and not ds.get(keyword):
            setattr(ds, keyword, _INVENTED[keyword])
        elif keyword in _TYPE2 and keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _leaf_keys(record_type: str, meta: dict[str, Any], number: int) -> Dataset:
    """Keys of a non-IMAGE leaf, through pydicom's recorders (PS3.3 F.5)."""
    ds = Dataset.from_json(_without_bulk(meta))
    if not ds.get("InstanceNumber"):
        ds.InstanceNumber = number
    try:
        return DIRECTORY_RECORDERS[record_type](ds)
    except (ValueError, KeyError, AttributeError):
        minimal = Dataset()
        minimal.InstanceNumber = ds.InstanceNumber
        return minimal


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


# -- building the plan from the index ---------------------------------------------------

_ROW = (PatientRow.id.label("patient_pk"), StudyRow.study_uid, SeriesRow.series_uid,
        InstanceRow.id.label("instance_pk"), InstanceRow.sop_uid, InstanceRow.sop_class_uid,
        InstanceRow.transfer_syntax_uid, InstanceRow.blob_key, InstanceRow.size, InstanceRow.rows,
        InstanceRow.instance_number)
Meta = dict[str, Any]


def _level(row: Any) -> tuple[Any, str, str]:
    return row.patient_pk, row.study_uid, row.series_uid


class _PlanBuilder:
    """Groups index rows, ordered patient → study → series → instance, into the plan.

    A series' first row brings the metadata for the patient, study and series records;
    IMAGE leaves need only their columns, so metadata is read for few rows.
    """

    def __init__(self) -> None:
        self.plan = ExportPlan()
        self.study_uids: set[str] = set()
        self._keys: tuple[Any, str, str] = (None, "", "")

    def add(self, row: Any, meta: Meta | None) -> None:
        patient_pk, study_uid, _series_uid = self._keys
        if _level(row) != self._keys:
            assert meta is not None, "the first row of a series comes with its metadata"
            if row.patient_pk != patient_pk:
                self._patient(meta)
            if row.patient_pk != patient_pk or row.study_uid != study_uid:
                self._study(meta)
            self._series(meta)
        self._keys = _level(row)
        self.study_uids.add(row.study_uid)
        self._instance(row, meta)

    def _patient(self, meta: Meta) -> None:
        keys = _keys(meta, _PATIENT_KEYS)
        path = (_component("P", len(self.plan.patients) + 1),)
        self.plan.patients.append(PatientEntry(DirectoryRecord("PATIENT", keys), path,
                                               _text(keys, "PatientName"),
                                               _text(keys, "PatientID")))

    def _study(self, meta: Meta) -> None:
        patient = self.plan.patients[-1]
        keys = _keys(meta, _STUDY_KEYS)
        study = StudyEntry(DirectoryRecord("STUDY", keys),
                           (*patient.path, _component("S", len(patient.studies) + 1)),
                           _text(keys, "StudyDate"), _text(keys, "StudyDescription"),
                           _text(keys, "AccessionNumber"))
        patient.studies.append(study)
        patient.record.children.append(study.record)

    def _series(self, meta: Meta) -> None:
        study = self.plan.patients[-1].studies[-1]
        keys = _keys(meta, _SERIES_KEYS)
        if not keys.get("SeriesNumber"):
            keys.SeriesNumber = len(study.series) + 1
        series = SeriesEntry(DirectoryRecord("SERIES", keys),
                             (*study.path, _component("SE", len(study.series) + 1)),
                             _text(keys, "Modality"), _text(keys, "SeriesNumber"),
                             _text(keys, "SeriesDescription"))
        study.series.append(series)
        study.record.children.append(series.record)

    def _instance(self, row: Any, meta: Meta | None) -> None:
        series = self.plan.patients[-1].studies[-1].series[-1]
        series.count += 1
        record_type = leaf_record_type(row.sop_class_uid)
        file_id = ("DICOM", *series.path, _component("I", series.count))
        record = DirectoryRecord(record_type, file_id=file_id, sop_class_uid=row.sop_class_uid,
                                 sop_instance_uid=row.sop_uid,
                                 transfer_syntax_uid=row.transfer_syntax_uid,
                                 instance_number=row.instance_number or series.count)
        if record_type != "IMAGE":
            assert meta is not None
            record.keys = _leaf_keys(record_type, meta, series.count)
        series.record.children.append(record)
        self.plan.files.append(ExportFile("/".join(file_id), row.blob_key, row.size))
        if record_type == "IMAGE" and row.rows:
            series.images.append(row.blob_key)


def _needing_metadata(rows: Sequence[Any]) -> list[int]:
    """Rows whose metadata the plan reads: each series' first, and non-IMAGE leaves."""
    needed, previous = [], None
    for row in rows:
        if _level(row) != previous or leaf_record_type(row.sop_class_uid) != "IMAGE":
            needed.append(row.instance_pk)
        previous = _level(row)
    return needed


def _metadata(session: Any, instance_pks: list[int], batch: int = 500) -> dict[int, Meta]:
    found: dict[int, Meta] = {}
    for start in range(0, len(instance_pks), batch):
        chunk = instance_pks[start:start + batch]
        statement = select(InstanceRow.id, InstanceRow.metadata_json).where(
            InstanceRow.id.in_(chunk))
        for pk, metadata in session.execute(statement):
            found[pk] = orjson.loads(metadata)
    return found


def plan_export(index: Index, study_uids: list[str]) -> ExportPlan:
    """What the export of these studies holds; UnknownStudies names any not stored.

    Patients are numbered (P0000001, …) in the order their first study was asked for, so
    the same request gives the same folders whichever patient the index made first."""
    wanted = list(dict.fromkeys(study_uids))
    statement = (
        select(*_ROW)
        .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
        .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
        .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
        .where(StudyRow.study_uid.in_(wanted))
        .order_by(PatientRow.id, StudyRow.study_date, StudyRow.study_time, StudyRow.id,
                  SeriesRow.series_number.asc().nulls_last(), SeriesRow.id,
                  InstanceRow.instance_number.asc().nulls_last(), InstanceRow.id)
    )
    with index.session() as session:
        rows = session.execute(statement).all()
        metadata = _metadata(session, _needing_metadata(rows))
    asked = {uid: n for n, uid in enumerate(wanted)}
    first_asked: dict[Any, int] = {}
    for row in rows:
        rank = asked[row.study_uid]
        first_asked[row.patient_pk] = min(rank, first_asked.get(row.patient_pk, rank))
    builder = _PlanBuilder()
    for row in sorted(rows, key=lambda row: first_asked[row.patient_pk]):  # stable sort
        builder.add(row, metadata.get(row.instance_pk))
    missing = [uid for uid in wanted if uid not in builder.study_uids]
    if missing:
        raise UnknownStudies(missing)
    return builder.plan


def patient_studies(index: Index, patient_id: str, issuer: str | None = None) -> list[str]:
    """Study UIDs of one patient (PatientID within IssuerOfPatientID, PS3.3 C.7.1.1)."""
    statement = select(PatientRow.issuer, StudyRow.study_uid).join(
        StudyRow, StudyRow.patient_pk == PatientRow.id).where(PatientRow.patient_id == patient_id)
    if issuer is not None:
        statement = statement.where(PatientRow.issuer == issuer)
    with index.session() as session:
        rows = session.execute(statement.order_by(StudyRow.id)).all()
    if not rows:
        raise UnknownPatient(patient_id, issuer)
    issuers = sorted({r.issuer for r in rows})
    if len(issuers) > 1:
        raise AmbiguousPatient(patient_id, issuers)
    return [r.study_uid for r in rows]


def studies_for(archive: Archive, study_uids: list[str], patient_id: str | None,
                issuer: str | None) -> ExportPlan:
    """The plan for every study of a patient and/or some studies: the patient comes first
    (P0000001), the studies named beside it after."""
    uids = [] if patient_id is None else patient_studies(archive.index, patient_id, issuer)
    return plan_export(archive.index, uids + list(study_uids))


# -- the zip ----------------------------------------------------------------------------


class _Sink:
    """A write-only, non-seekable file: zipfile then writes data descriptors (APPNOTE 4.3.9)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks


def _info(name: str, compress: int = zipfile.ZIP_DEFLATED, size: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, time.localtime()[:6])
    info.compress_type = compress
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info


def _copy(zf: zipfile.ZipFile, sink: _Sink, item: ExportFile,
          blobs: BlobStore) -> Iterator[bytes]:
    """One stored instance, byte for byte and uncompressed (it may already be JPEG)."""
    with zf.open(_info(item.name, zipfile.ZIP_STORED, item.size), "w") as dest:
        for chunk in blobs.iter_bytes(item.blob_key, COPY_CHUNK):
            dest.write(chunk)
            yield from sink.drain()
    yield from sink.drain()


def _preview(blobs: BlobStore, series: SeriesEntry) -> bytes | None:
    """A JPEG of the middle image of the series, or None when it can't be rendered."""
    from cloudfilm.services.imaging.rendering import RenderOptions, render_frame

    if not series.images:
        return None
    key = series.images[len(series.images) // 2]
    try:
        with blobs.open(key) as stream:
            return render_frame(stream, 1,
                                RenderOptions(media_type="image/jpeg", viewport=PREVIEW_SIZE))
    except Exception:  # noqa: BLE001 - a preview is a courtesy: an odd image must not stop the export
        return None


def stream_export(plan: ExportPlan, blobs: BlobStore) -> Iterator[bytes]:
    """The zip, chunk by chunk; memory stays around one copy chunk plus the DICOMDIR."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:
        zf.writestr(_info("DICOMDIR"), plan.dicomdir())
        zf.writestr(_info("README.TXT"), readme(plan))
        yield from sink.drain()
        for item in plan.files:
            yield from _copy(zf, sink, item, blobs)
        previews: set[str] = set()
        for series in (s for study in plan.studies for s in study.series):
            image = _preview(blobs, series)
            if image is not None:
                zf.writestr(_info(series.preview_name, zipfile.ZIP_STORED), image)
                previews.add(series.preview_name)
                yield from sink.drain()
        zf.writestr(_info("INDEX.HTM"), index_html(plan, previews))
    yield from sink.drain()


def stream_originals(plan: ExportPlan, blobs: BlobStore) -> Iterator[bytes]:
    """Only the stored Part-10 files (PS3.10 §7), byte for byte, named ``<file ID>.dcm``:
    for a person who wants the originals to hand on or to load into another viewer, with
    no DICOMDIR or previews to skip past. Streamed like ``stream_export``."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:
        for item in plan.files:
            yield from _copy(zf, sink, ExportFile(item.name + ".dcm", item.blob_key, item.size),
                             blobs)
    yield from sink.drain()


# -- README.TXT and INDEX.HTM (IHE RAD TF-3 §4.47.4.1.2.2) -------------------------------

_README = """\
DICOM MEDIUM - {count} IMAGE FILE(S) IN {studies} STUDY(IES)

Created by {application} on {date}.

This medium follows the IHE Portable Data for Imaging (PDI) profile and the
DICOM General Purpose media profiles (PS3.11 Annex D):

  DICOMDIR   the DICOM directory of every file on this medium
  DICOM\\     the images and documents, unchanged, as DICOM Part 10 files
  INDEX.HTM  an overview with previews, for any web browser
  IHE_PDI\\   the previews that INDEX.HTM shows

To view the images, open the medium in a DICOM viewer (for example one that
offers "open DICOMDIR" or "import CD"), and point it at the DICOMDIR file.
The previews in INDEX.HTM are reduced images, not for diagnosis.

Questions about the content go to the institution that gave you this medium.
"""


def readme(plan: ExportPlan) -> bytes:
    """ASCII with CR LF line ends, readable on any system the medium is read on."""
    text = _README.format(count=len(plan.files), studies=len(plan.studies),
                          application=APPLICATION, date=time.strftime("%Y-%m-%d"))
    return text.replace("\n", "\r\n").encode("ascii")


def _display(text: str) -> str:
    return html.escape(text.replace("^", " ").strip() or "-")


def _series_row(series: SeriesEntry, previews: set[str]) -> str:
    name = series.preview_name
    alt = f"preview of series {_display(series.number)}"
    preview = (f'<a href="{name}"><img src="{name}" alt="{alt}" /></a>'
               if name in previews else "no preview")
    cells = (_display(series.number), _display(series.modality), _display(series.description),
             str(series.count), preview)
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _study_section(study: StudyEntry, previews: set[str]) -> list[str]:
    date = study.date
    shown = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else date
    head = (f"<h3>Study of {_display(shown)}: {_display(study.description)}"
            f" (accession {_display(study.accession)})</h3>")
    rows = [_series_row(series, previews) for series in study.series]
    return [head, "<table>", "<tr><th>Series</th><th>Modality</th><th>Description</th>"
            "<th>Files</th><th>Preview</th></tr>", *rows, "</table>"]


def index_html(plan: ExportPlan, previews: set[str]) -> bytes:
    """INDEX.HTM: XHTML 1.0 Strict without scripts, as IHE PDI asks of web content."""
    body = []
    for patient in plan.patients:
        body.append(f"<h2>Patient {_display(patient.name)} "
                    f"(ID {_display(patient.patient_id)})</h2>")
        for study in patient.studies:
            body.extend(_study_section(study, previews))
    page = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        "<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />"
        "<title>Images on this medium</title></head>",
        "<body><h1>Images on this medium</h1>",
        '<p>Read <a href="README.TXT">README.TXT</a> first. Previews are not for diagnosis.</p>',
        *body, "</body></html>", ""]
    return "\r\n".join(page).encode("utf-8")
