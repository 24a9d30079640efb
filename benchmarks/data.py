"""Synthetic instances, built once and sent byte-for-byte the same to both servers.

* `ct_instance`: a 512×512 CT Image Storage instance, 16-bit signed, explicit VR
  little endian, with CT-like pixels (a noisy body disc in air).
* `seed_instance`: a tiny (8×8) CT instance that stands for one study of the QIDO
  index, with realistic, varied patient and study attributes.
"""

from __future__ import annotations

import io
import random
import struct
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SOP_CLASSES = {"CT": CT_IMAGE_STORAGE, "MR": "1.2.840.10008.5.1.4.1.1.4",
               "CR": "1.2.840.10008.5.1.4.1.1.1"}


def new_uid() -> str:
    """A UUID-derived UID (PS3.5 §B.2): unique without a registered root."""
    return f"2.25.{uuid.uuid4().int}"


def _base_dataset(sop_uid: str, sop_class: str = CT_IMAGE_STORAGE) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ct_pixels(rng: np.random.Generator, size: int, slice_index: int) -> np.ndarray:
    """A body-shaped disc (soft tissue with noise) in air, stored with intercept -1024."""
    yy, xx = np.mgrid[0:size, 0:size]
    centre = size / 2
    radius = size * (0.38 + 0.04 * np.sin(slice_index / 25))
    inside = (yy - centre) ** 2 / 0.8 + (xx - centre) ** 2 < radius**2
    hu = np.where(inside, 40, -1000).astype(np.int32)
    hu = hu + rng.normal(0, 25, size=(size, size)).astype(np.int32)
    return (hu + 1024).clip(-2000, 4000).astype(np.int16)


@dataclass(frozen=True)
class SeriesSpec:
    """One CT series: its UIDs and the patient it belongs to."""

    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    study_date: str

    @classmethod
    def new(cls, label: str) -> SeriesSpec:
        return cls(new_uid(), new_uid(), f"BENCH-{label}", f"BENCH^{label.upper()}", "20240105")


def ct_instance(spec: SeriesSpec, number: int, rng: np.random.Generator,
                sop_uid: str | None = None, size: int = 512) -> tuple[str, bytes]:
    """Instance ``number`` (1-based) of the series: (SOP Instance UID, Part-10 bytes)."""
    sop_uid = sop_uid or new_uid()
    ds = _base_dataset(sop_uid)
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = spec.patient_id[-16:]
    ds.StudyID = "1"
    ds.StudyDescription = "CT CHEST BENCHMARK"
    ds.ReferringPhysicianName = "REFERRER^A"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "AXIAL 1.0"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-250.0, -250.0, -1.0 * number]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.FrameOfReferenceUID = spec.series_uid + ".1"
    ds.KVP = 120
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = _ct_pixels(rng, size, number).tobytes()
    return sop_uid, _encode(ds)


def ct_series(spec: SeriesSpec, count: int, seed: int = 1) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    return [ct_instance(spec, n, rng) for n in range(1, count + 1)]


# -- the QIDO index ----------------------------------------------------------------
LAST_NAMES = ["DOE", "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER",
              "DAVIS", "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON",
              "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ",
              "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON",
              "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL",
              "DOERR", "DOEBLER", "MUELLER", "SCHMIDT", "DUPONT", "ROSSI", "JANSSEN", "NOVAK",
              "KOWALSKI", "NIELSEN"]
FIRST_NAMES = ["JOHN", "JANE", "MARY", "JAMES", "LINDA", "ROBERT", "PATRICIA", "MICHAEL",
               "BARBARA", "DAVID", "ELIZABETH", "WILLIAM", "SUSAN", "RICHARD", "JESSICA",
               "JOSEPH", "SARAH", "THOMAS", "KAREN", "CHARLES"]
MODALITIES = ["CT", "MR", "CR"]
DESCRIPTIONS = {"CT": ["CT CHEST", "CT HEAD W/O", "CT ABDOMEN PELVIS"],
                "MR": ["MR BRAIN", "MR KNEE LEFT", "MR LUMBAR SPINE"],
                "CR": ["CHEST PA LAT", "HAND RIGHT", "PELVIS AP"]}
FIRST_DATE = date(2015, 1, 1)
DATE_SPAN_DAYS = 3652  # ten years
STUDIES_PER_PATIENT = 2.5


@dataclass(frozen=True)
class SeedStudy:
    number: int
    patient_id: str
    patient_name: str
    study_date: str
    modality: str


def patient_for(patient_number: int) -> tuple[str, str, str, str]:
    """(PatientID, PatientName, birth date, sex) for patient ``patient_number``, stable."""
    rnd = random.Random(patient_number * 7919)
    name = f"{rnd.choice(LAST_NAMES)}^{rnd.choice(FIRST_NAMES)}_{patient_number}"
    birth = date(1930, 1, 1) + timedelta(days=rnd.randrange(365 * 90))
    return f"PID{patient_number:07d}", name, birth.strftime("%Y%m%d"), rnd.choice("MF")


def seed_study(number: int, total: int) -> SeedStudy:
    rnd = random.Random(number)
    patients = max(1, int(total / STUDIES_PER_PATIENT))
    patient = rnd.randrange(patients)
    pid, name, _, _ = patient_for(patient)
    day = FIRST_DATE + timedelta(days=rnd.randrange(DATE_SPAN_DAYS))
    return SeedStudy(number, pid, name, day.strftime("%Y%m%d"), rnd.choice(MODALITIES))


_SEED_PIXELS = (np.arange(64, dtype=np.int16).reshape(8, 8) * 10).tobytes()
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def _element(group: int, elem: int, vr: bytes, value: bytes | str | int) -> bytes:
    """One explicit VR little endian element, value padded to even length."""
    if isinstance(value, int):
        raw = value.to_bytes(2, "little")  # US
    else:
        raw = value.encode("latin-1") if isinstance(value, str) else value
        if len(raw) % 2:
            raw += b"\0" if vr in (b"UI", b"OB") else b" "
    head = struct.pack("<HH", group, elem) + vr
    if vr in _LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(raw)) + raw
    return head + struct.pack("<H", len(raw)) + raw


def encode_part10(sop_class: str, sop_uid: str,
                  elements: list[tuple[int, int, bytes, bytes | str | int]]) -> bytes:
    """A Part-10 file in explicit VR little endian from (group, element, VR, value) rows.

    The QIDO seed needs 100k instances: pydicom takes ~2 ms each, this ~0.2 ms (whole
    instance). `check_encoder()` reads one back with pydicom before every seeding.
    """
    meta = b"".join([
        _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, 0x0002, b"UI", sop_class),
        _element(0x0002, 0x0003, b"UI", sop_uid),
        _element(0x0002, 0x0010, b"UI", ExplicitVRLittleEndian),
        _element(0x0002, 0x0012, b"UI", PYDICOM_IMPLEMENTATION_UID),
    ])
    group_length = _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta)))
    body = b"".join(_element(*row) for row in sorted(elements, key=lambda r: (r[0], r[1])))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


def seed_instance(number: int, total: int) -> tuple[SeedStudy, bytes]:
    """Study ``number`` of an index of ``total`` studies: one 8×8 instance."""
    study = seed_study(number, total)
    rnd = random.Random(number + 1_000_003)
    pid, name, birth, sex = patient_for(int(study.patient_id[3:]))
    sop_class, sop_uid, series_uid = SOP_CLASSES[study.modality], new_uid(), new_uid()
    description = rnd.choice(DESCRIPTIONS[study.modality])
    time_of_day = f"{rnd.randrange(7, 20):02d}{rnd.randrange(60):02d}{rnd.randrange(60):02d}"
    elements: list[tuple[int, int, bytes, bytes | str | int]] = [
        (0x0008, 0x0005, b"CS", "ISO_IR 100"),
        (0x0008, 0x0016, b"UI", sop_class),
        (0x0008, 0x0018, b"UI", sop_uid),
        (0x0008, 0x0020, b"DA", study.study_date),
        (0x0008, 0x0030, b"TM", time_of_day),
        (0x0008, 0x0050, b"SH", f"ACC{number:09d}"),
        (0x0008, 0x0060, b"CS", study.modality),
        (0x0008, 0x0090, b"PN", f"{rnd.choice(LAST_NAMES)}^{rnd.choice(FIRST_NAMES)}"),
        (0x0008, 0x1030, b"LO", description),
        (0x0008, 0x103E, b"LO", description),
        (0x0010, 0x0010, b"PN", name),
        (0x0010, 0x0020, b"LO", pid),
        (0x0010, 0x0021, b"LO", "HOSP-A"),
        (0x0010, 0x0030, b"DA", birth),
        (0x0010, 0x0040, b"CS", sex),
        (0x0020, 0x000D, b"UI", new_uid()),
        (0x0020, 0x000E, b"UI", series_uid),
        (0x0020, 0x0010, b"SH", str(number % 10000)),
        (0x0020, 0x0011, b"IS", "1"),
        (0x0020, 0x0013, b"IS", "1"),
        (0x0028, 0x0002, b"US", 1),
        (0x0028, 0x0004, b"CS", "MONOCHROME2"),
        (0x0028, 0x0010, b"US", 8),
        (0x0028, 0x0011, b"US", 8),
        (0x0028, 0x0100, b"US", 16),
        (0x0028, 0x0101, b"US", 16),
        (0x0028, 0x0102, b"US", 15),
        (0x0028, 0x0103, b"US", 1),
        (0x0028, 0x1052, b"DS", "-1024"),
        (0x0028, 0x1053, b"DS", "1"),
        (0x7FE0, 0x0010, b"OW", _SEED_PIXELS),
    ]
    return study, encode_part10(sop_class, sop_uid, elements)


def check_encoder() -> None:
    """Read a seed instance back with pydicom (a self-check run before seeding)."""
    from pydicom import dcmread

    study, raw = seed_instance(1, 10)
    ds = dcmread(io.BytesIO(raw))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert str(ds.PatientID) == study.patient_id and str(ds.PatientName) == study.patient_name
    assert ds.StudyDate == study.study_date and ds.Modality == study.modality
    assert ds.pixel_array.shape == (8, 8) and int(ds.pixel_array[7, 7]) == 630
