"""Every supported transfer syntax, end to end through the server, with real sample files.

pydicom ships the samples (pydicom.data); HTJ2K has none, so one is encoded here from
MR_small with imagecodecs (OpenJPH). Each is stored by STOW-RS, then read back as
stored, decoded to Explicit VR Little Endian, and rendered.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames

from factory import parse_multipart, sample, stow, to_bytes

EXPLICIT_LE = "1.2.840.10008.1.2.1"
SAMPLES = [
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", 1),
    ("examples_ybr_color.dcm", "1.2.840.10008.1.2.4.50", 2),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", 1),
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", 1),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", 1),
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", 1),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", 1),
    ("SC_rgb_gdcm_KY.dcm", "1.2.840.10008.1.2.4.91", 1),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", 1),
    ("rtdose_rle.dcm", "1.2.840.10008.1.2.5", 7),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", 1),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2", 1),
    ("HTJ2K", "1.2.840.10008.1.2.4.201", 1),
]


def _htj2k_sample() -> pydicom.Dataset:
    imagecodecs = pytest.importorskip("imagecodecs")
    ds = sample("MR_small.dcm")
    ds.PixelData = encapsulate([imagecodecs.htj2k_encode(ds.pixel_array, reversible=True)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    return ds


def _load(name: str) -> pydicom.Dataset:
    return _htj2k_sample() if name == "HTJ2K" else sample(name)


def _stored_frame(ds: pydicom.Dataset, number: int) -> bytes:
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        count = int(ds.get("NumberOfFrames", 1))
        return list(generate_frames(ds.PixelData, number_of_frames=count))[number - 1]
    frames = int(ds.get("NumberOfFrames", 1))
    size = len(ds.PixelData) // frames
    return bytes(ds.PixelData[(number - 1) * size: number * size])


def _expected_pixels(raw: bytes, number: int) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(raw))
    array = ds.pixel_array
    return array[number - 1] if int(ds.get("NumberOfFrames", 1)) > 1 else array


@pytest.fixture(scope="module")
def stored(server: object) -> dict[str, tuple[pydicom.Dataset, bytes]]:
    datasets = {name: _load(name) for name, _, _ in SAMPLES}
    raws = {name: to_bytes(ds) for name, ds in datasets.items()}
    auth = server.auth  # type: ignore[attr-defined]
    with httpx.Client(base_url=server.dicomweb, headers=auth) as http:  # type: ignore[attr-defined]
        response = stow(http, list(raws.values()))
        assert response.status_code == 200, response.text
    return {name: (datasets[name], raws[name]) for name in datasets}


def _url(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


@pytest.mark.parametrize(("name", "uid", "frame"), SAMPLES)
def test_frame_as_stored(client: httpx.Client, stored: dict, name: str, uid: str, frame: int) -> None:
    ds, raw = stored[name]
    response = client.get(f"{_url(ds)}/frames/{frame}", headers={
        "accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert response.status_code == 200
    (headers, data), = parse_multipart(response)
    if uid == "1.2.840.10008.1.2.1.99":  # deflated files have no frame byte ranges: decoded
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
        expected = _expected_pixels(raw, frame)
        assert data == expected.astype(expected.dtype.newbyteorder("<")).tobytes()
        return
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={uid}"
    assert data == _stored_frame(pydicom.dcmread(io.BytesIO(raw)), frame)


@pytest.mark.parametrize(("name", "uid", "frame"), SAMPLES)
def test_frame_decoded_to_explicit_little_endian(client: httpx.Client, stored: dict, name: str,
                                                 uid: str, frame: int) -> None:
    ds, raw = stored[name]
    response = client.get(f"{_url(ds)}/frames/{frame}", headers={
        "accept": 'multipart/related; type="application/octet-stream"'})
    assert response.status_code == 200
    (headers, data), = parse_multipart(response)
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    expected = _expected_pixels(raw, frame)
    assert data == expected.astype(expected.dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize(("name", "uid", "frame"), SAMPLES)
def test_instance_decoded_and_rendered(client: httpx.Client, stored: dict, name: str, uid: str,
                                       frame: int) -> None:
    ds, raw = stored[name]
    response = client.get(_url(ds), headers={"accept": 'multipart/related; type="application/dicom"'})
    assert response.status_code == 200
    (headers, data), = parse_multipart(response)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    decoded = pydicom.dcmread(io.BytesIO(data))
    assert decoded.file_meta.TransferSyntaxUID == EXPLICIT_LE
    expected = pydicom.dcmread(io.BytesIO(raw)).pixel_array
    assert np.array_equal(decoded.pixel_array, expected)
    image = client.get(f"{_url(ds)}/frames/{frame}/rendered", headers={"accept": "image/png"})
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size[0] == int(ds.Columns)
