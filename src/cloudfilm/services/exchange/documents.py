"""Non-DICOM documents as DICOM instances: PDF reports and photos of film or paper.

* PDF → Encapsulated PDF Storage (PS3.3 A.45.1: Patient, General Study, Encapsulated
  Document Series with Modality DOC, General Equipment, SC Equipment, Encapsulated
  Document, SOP Common).
* JPEG or PNG → Secondary Capture Image Storage (PS3.3 A.8.1). A baseline 8-bit JPEG
  (SOF0, ITU-T T.81) is encapsulated as is, in JPEG Baseline (PS3.5 §A.4.1, §8.2.1:
  YBR_FULL_422 when chroma is subsampled); anything else (PNG, progressive or 12-bit
  JPEG, CMYK, or a photo whose EXIF orientation would be lost) is decoded to native
  RGB or MONOCHROME2 (PS3.3 C.7.6.3.1.2).

The new instance joins an existing study as a new series, its Patient and Study
module attributes copied from what the archive stores for that study, or starts a
new study for a stored patient. It enters through `IngestService`, so QIDO and WADO
see it like any other instance.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from PIL import Image, ImageOps
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query
from cloudfilm.services.archive.ingest import DERIVED
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.context import Archive
from cloudfilm.storage.blobs import StagedBlob

MAX_DOCUMENT_BYTES = 256 << 20
MAX_PIXELS = 100_000_000
MANUFACTURER = "cloudfilm"
PDF, JPEG, PNG = "application/pdf", "image/jpeg", "image/png"
_MAGIC = ((b"%PDF-", PDF), (b"\xff\xd8\xff", JPEG), (b"\x89PNG\r\n\x1a\n", PNG))

# Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes copied.
PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDsSequence", "OtherPatientNames", "PatientComments", "EthnicGroup",
    "PatientSpeciesDescription", "PatientBreedDescription", "ResponsiblePerson",
    "PatientIdentityRemoved", "DeidentificationMethod",
)
STUDY_KEYWORDS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence",
    "PatientAge", "PatientSize", "PatientWeight",
)


class UnsupportedDocument(ValueError):
    """Not a PDF, JPEG or PNG, or one that can't be used (HTTP 415, exit 2)."""

    status = 415


class DocumentTooLarge(UnsupportedDocument):
    status = 413


class UnknownTarget(LookupError):
    """The study or patient to attach to is not stored (HTTP 404, exit 1)."""


class DocumentNotStored(RuntimeError):
    """The archive refused the new instance (ingest failed); the message says why."""


@dataclass(frozen=True)
class AttachedDocument:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    media_type: str
    status: str

    def as_dict(self) -> dict[str, str]:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid,
                "sop_instance_uid": self.sop_instance_uid, "sop_class_uid": self.sop_class_uid,
                "media_type": self.media_type, "status": self.status}


def sniff(path: Path) -> str:
    """The document's media type from its first bytes (names and client types can lie)."""
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(f"the file has {size} bytes; documents are limited to "
                               f"{MAX_DOCUMENT_BYTES}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    raise UnsupportedDocument("unsupported file type: only PDF reports and JPEG or PNG "
                              "images can be attached")


# -- where the document goes: an existing study, or a new one for a stored patient --------


def _from_json(meta: dict[str, Any], keywords: tuple[str, ...]) -> Dataset:
    wanted = {f"{tag_for_keyword(k):08X}" for k in keywords}
    return Dataset.from_json({k: v for k, v in meta.items()
                              if k in wanted and "BulkDataURI" not in v})


def _stored_attributes(archive: Archive, study_uid: str, keywords: tuple[str, ...]) -> Dataset:
    """Attributes of the study's first stored instance (its metadata in the index)."""
    try:
        first = archive.retrieve.instances(study_uid)[0]
        meta = archive.retrieve.metadata(study_uid, first.series_uid, first.sop_uid)[0]
    except NotStored as exc:
        raise UnknownTarget(f"study {study_uid} not found") from exc
    return _from_json(orjson.loads(meta), keywords)


def study_context(archive: Archive, study_uid: str) -> Dataset:
    """Patient and Study modules of a stored study, as its instances have them."""
    return _stored_attributes(archive, study_uid, PATIENT_KEYWORDS + STUDY_KEYWORDS)


def new_study_context(archive: Archive, patient_id: str, issuer: str | None,
                      description: str) -> Dataset:
    """A new study (fresh UID, dated now) for a patient already stored (PS3.3 C.7.2.1)."""
    from cloudfilm.services.exchange.export import AmbiguousPatient, UnknownPatient, patient_studies

    try:
        study_uids = patient_studies(archive.index, patient_id, issuer)
    except (UnknownPatient, AmbiguousPatient) as exc:
        raise UnknownTarget(str(exc)) from exc
    ds = _stored_attributes(archive, study_uids[0], PATIENT_KEYWORDS)
    now = datetime.now()
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.StudyDescription = description[:64]
    return ds


def _next_series_number(archive: Archive, study_uid: str) -> int:
    try:
        items = archive.query.search_series(Query(Level.SERIES), study_uid).items
    except LookupError:  # a new study has no series yet
        return 1
    numbers = []
    for item in items:
        for value in item.get("00200011", {}).get("Value", []):
            try:
                numbers.append(int(value))
            except (TypeError, ValueError):
                continue
    return max(numbers, default=0) + 1


# -- building the instance ---------------------------------------------------------------


def _base(context: Dataset, sop_class: UID, modality: str, series_number: int,
          title: str) -> Dataset:
    """SOP Common, General Series, General Equipment and SC Equipment (PS3.3 C.12.1, C.7.3.1,
    C.7.5.1, C.8.6.1) around the copied Patient and Study modules."""
    now = datetime.now()
    date, moment = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    ds.update(context)
    ds.SpecificCharacterSet = "ISO_IR 192"  # values are Unicode already; UTF-8 holds them all
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, moment
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = generate_uid(), modality, series_number
    ds.SeriesDate, ds.SeriesTime, ds.SeriesDescription = date, moment, title[:64]
    ds.Manufacturer = MANUFACTURER
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, moment
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def pdf_dataset(context: Dataset, data: bytes, series_number: int, title: str) -> Dataset:
    """Encapsulated PDF IOD (PS3.3 A.45.1, C.24.2 Encapsulated Document module)."""
    ds = _base(context, EncapsulatedPDFStorage, "DOC", series_number, title)
    ds.ConversionType = "WSD"
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # a report names its patient
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = PDF
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + b"\x00" * (len(data) % 2)  # OB values have even length
    return ds


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's frame header (SOFn, ITU-T T.81 §B.2.2) and APP14 segment say."""

    marker: int
    precision: int
    rows: int
    columns: int
    sampling: tuple[tuple[int, int], ...]
    adobe_transform: int | None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_frame(data: bytes) -> JpegFrame:
    """Walk the marker segments up to the frame header; UnsupportedDocument if corrupt."""
    i, adobe = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        segment = data[i + 4:i + 2 + length]
        if marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        if marker in _SOF and len(segment) >= 6:
            rows, columns = struct.unpack(">HH", segment[1:5])
            count = segment[5]
            sampling = tuple((segment[7 + 3 * k] >> 4, segment[7 + 3 * k] & 0x0F)
                             for k in range(count) if 8 + 3 * k <= len(segment))
            return JpegFrame(marker, segment[0], rows, columns, sampling, adobe)
        if marker == 0xDA:
            break
        i += 2 + length
    raise UnsupportedDocument("corrupt JPEG: no frame header before the image data")


def _open_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS or max(image.size) > 65535:
            raise DocumentTooLarge(f"the image has {image.width}x{image.height} pixels; "
                                   f"at most {MAX_PIXELS} pixels and 65535 per side")
        image.load()
    except UnsupportedDocument:
        raise
    except Exception as exc:  # Pillow raises many types for damaged files
        raise UnsupportedDocument(f"cannot decode the image: {exc}") from exc
    return image


def _photometric(frame: JpegFrame) -> str:
    """PS3.5 §8.2.1: YBR_FULL_422 when chroma is subsampled, YBR_FULL when not."""
    if len(frame.sampling) == 1:
        return "MONOCHROME2"
    if frame.adobe_transform == 0:
        return "RGB"
    return "YBR_FULL" if len(set(frame.sampling)) == 1 else "YBR_FULL_422"


def _keeps_jpeg(frame: JpegFrame, image: Image.Image) -> bool:
    """Encapsulate unchanged only baseline 8-bit grey or colour with no EXIF rotation."""
    orientation = image.getexif().get(0x0112, 1)
    return (frame.marker == 0xC0 and frame.precision == 8 and len(frame.sampling) in (1, 3)
            and orientation == 1)


def _pixel_module(ds: Dataset, rows: int, columns: int, samples: int, bits: int,
                  photometric: str) -> None:
    """Image Pixel module (PS3.3 C.7.6.3) for unsigned 8- or 16-bit data."""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0


def _encapsulated_jpeg(ds: Dataset, data: bytes, frame: JpegFrame) -> None:
    _pixel_module(ds, frame.rows, frame.columns, len(frame.sampling), 8, _photometric(frame))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _native(ds: Dataset, image: Image.Image) -> None:
    """Decoded pixels: MONOCHROME2 (8 or 16 bit) or RGB, upright per EXIF orientation."""
    import numpy

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):
        array = numpy.clip(numpy.asarray(image), 0, 65535).astype("<u2")
        _pixel_module(ds, array.shape[0], array.shape[1], 1, 16, "MONOCHROME2")
    elif image.mode in ("1", "L", "LA"):
        array = numpy.asarray(image.convert("L"), dtype=numpy.uint8)
        _pixel_module(ds, array.shape[0], array.shape[1], 1, 8, "MONOCHROME2")
    else:
        array = numpy.asarray(image.convert("RGB"), dtype=numpy.uint8)
        _pixel_module(ds, array.shape[0], array.shape[1], 3, 8, "RGB")
    raw = array.tobytes()
    ds.PixelData = raw + b"\x00" * (len(raw) % 2)
    ds["PixelData"].VR = "OW" if ds.BitsAllocated == 16 else "OB"


def image_dataset(context: Dataset, data: bytes, media_type: str, series_number: int,
                  title: str) -> Dataset:
    """Secondary Capture Image IOD (PS3.3 A.8.1) from a JPEG or PNG file."""
    ds = _base(context, SecondaryCaptureImageStorage, "OT", series_number, title)
    ds.ConversionType = "SI"  # scanned image: a photo of film or paper
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    image = _open_image(data)
    if media_type == JPEG:
        frame = jpeg_frame(data)
        ds.LossyImageCompression = "01"  # once lossy, always flagged (PS3.3 C.7.6.1.1.5)
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        if _keeps_jpeg(frame, image):
            _encapsulated_jpeg(ds, data, frame)
            return ds
    _native(ds, image)
    return ds


# -- storing it --------------------------------------------------------------------------


def _stage(archive: Archive, ds: Dataset) -> StagedBlob:
    """The Part-10 file, staged and sealed (fsync) for ingest."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return archive.blobs.stage_bytes(buffer.getvalue())


def attach(archive: Archive, source: Path, filename: str, *, study_uid: str | None = None,
           patient_id: str | None = None, issuer: str | None = None,
           title: str | None = None) -> AttachedDocument:
    """Store ``source`` as a new series of ``study_uid``, or of a new study of ``patient_id``."""
    media_type = sniff(source)
    label = (title or Path(filename).stem or "Document").strip()
    if study_uid is not None:
        context = study_context(archive, study_uid)
    elif patient_id is not None:
        context = new_study_context(archive, patient_id, issuer, label)
    else:
        raise ValueError("attach needs a study or a patient")
    number = _next_series_number(archive, str(context.StudyInstanceUID))
    data = source.read_bytes()
    if media_type == PDF:
        ds = pdf_dataset(context, data, number, label)
    else:
        ds = image_dataset(context, data, media_type, number, label)
    outcome = archive.ingest.ingest_staged([_stage(archive, ds)], str(ds.StudyInstanceUID),
                                           admission=DERIVED)[0]
    if not outcome.ok:
        raise DocumentNotStored(outcome.reason)
    return AttachedDocument(outcome.study_uid, outcome.series_uid, outcome.sop_instance_uid,
                            outcome.sop_class_uid, media_type, outcome.status)
