"""Build small, valid Part-10 instances and STOW bodies for tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloudfilm.domain.volume import CtVolume
    from cloudfilm.services.demo.generate import DemoOptions

import io
import secrets
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def make_instance(*, study: str | None = None, series: str | None = None, sop: str | None = None,
                  patient_id: str = "P1", patient_name: str = "Doe^John", issuer: str = "",
                  study_date: str = "20250301", study_time: str = "101500", modality: str = "CT",
                  rows: int = 16, columns: int = 16, frames: int = 1, instance_number: int = 1,
                  charset: str | None = None, seed: int | None = None, **extra: Any) -> pydicom.Dataset:
    """A CT-like instance with real pixels; keyword arguments set further attributes."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = extra.pop("AccessionNumber", "ACC" + secrets.token_hex(3).upper())
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = extra.pop("StudyDescription", "CT CHEST")
    ds.Modality = modality
    ds.SeriesNumber = extra.pop("SeriesNumber", 1)
    ds.SeriesDescription = extra.pop("SeriesDescription", "AXIAL")
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.ImagePositionPatient = [0, 0, instance_number * 1.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    if frames > 1:
        ds.NumberOfFrames = frames
    rng = np.random.default_rng(seed)
    pixels = rng.integers(-1000, 1000, size=(frames, rows, columns), dtype=np.int16)
    ds.PixelData = pixels.tobytes()
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_related(parts: list[bytes], boundary: str | None = None,
                      part_type: str = "application/dicom") -> tuple[bytes, str]:
    """A STOW-RS body and its Content-Type header (PS3.18 §10.5.1)."""
    boundary = boundary or secrets.token_hex(12)
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return b"".join(chunks), content_type


def stow(client: Any, parts: list[bytes], study: str | None = None,
         boundary: str | None = None) -> Any:
    """POST a STOW-RS request through an httpx client whose base URL is the DICOMweb root."""
    body, content_type = multipart_related(parts, boundary)
    url = f"/studies/{study}" if study else "/studies"
    return client.post(url, content=body, headers={"content-type": content_type,
                                                   "accept": "application/dicom+json"})


def sample(name: str, study: str | None = None, series: str | None = None) -> pydicom.Dataset:
    """One of pydicom's real sample files, given fresh UIDs so tests don't collide."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PatientID" not in ds or not ds.PatientID:
        ds.PatientID = "SAMPLE"
    return ds


def parse_multipart(response: Any) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related response into (headers, body) parts, strictly."""
    content_type = response.headers["content-type"]
    boundary = next(p.split("=", 1)[1].strip('"') for p in content_type.split(";")
                    if p.strip().startswith("boundary="))
    body: bytes = response.content
    delimiter = f"--{boundary}".encode()
    assert body.startswith(delimiter + b"\r\n"), "body must start with the boundary line"
    parts = []
    for chunk in body.split(b"\r\n" + delimiter)[0:]:
        chunk = chunk[len(delimiter) + 2:] if chunk.startswith(delimiter + b"\r\n") else chunk
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    return parts


def demo_volumes(options: DemoOptions) -> dict[tuple[int, int], CtVolume]:
    """Every demo study as a CT volume, keyed (patient index, study index), built in memory."""
    from collections import defaultdict

    from cloudfilm.services.demo.generate import iter_demo_datasets
    from cloudfilm.services.imaging.volumes import volume_from_datasets

    series: dict[tuple[int, int], list] = defaultdict(list)
    for ds, info in iter_demo_datasets(options):
        series[(info["patient_index"], info["study_index"])].append(ds)
    return {key: volume_from_datasets(datasets) for key, datasets in series.items()}
