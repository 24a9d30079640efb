"""Rendered and thumbnail images from the server equal a full decode of the same file.

The server reads one native frame as one byte range and windows 8/16-bit pixels through a
lookup table; compressed and Deflated files go through pydicom's whole-object decoders.
The reference here does neither: pydicom reads the entire file, ``pixel_array`` decodes
every frame, and the PS3.3 C.11 arithmetic runs per pixel in float64. PNG must match it
exactly, JPEG within JPEG's error, thumbnails within resampling error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from cloudfilm.services.imaging import pixels, rendering
from factory import make_instance, sample, stow, to_bytes

Window = tuple[float, float, str]
#: Case name -> (the dataset, its stored bytes).
Stored = dict[str, tuple[Dataset, bytes]]


# -- the reference: whole-file decode, per-pixel float arithmetic ---------------------------


def reference_pixels(raw: bytes, frame: int, window: Window | None = None) -> np.ndarray:
    """8-bit display pixels of frame ``frame`` (1-based) the long way round."""
    ds = pydicom.dcmread(io.BytesIO(raw))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    array = ds.pixel_array[frame - 1] if frames > 1 else ds.pixel_array
    desc = pixels.decoded_description(pixels.PixelDescription.from_dataset(ds, frame - 1))
    if desc.photometric_interpretation == "PALETTE COLOR":
        return _to_8_bits(apply_color_lut(array, ds), 16)
    if desc.samples_per_pixel == 3:
        return array if array.dtype == np.uint8 else _to_8_bits(array, desc.bits_stored)
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(array, ds).astype(np.float64)
    else:
        values = array.astype(np.float64) * desc.rescale_slope + desc.rescale_intercept
    center, width, function = window or _dataset_window(desc) or (
        (values.min() + values.max()) / 2, max(values.max() - values.min(), 1e-6), "LINEAR_EXACT")
    shown = rendering.apply_window(values, center, width, function)
    if desc.photometric_interpretation == "MONOCHROME1":
        shown = 255.0 - shown
    return np.rint(shown).astype(np.uint8)


def _dataset_window(desc: pixels.PixelDescription) -> Window | None:
    if desc.window_center is None or desc.window_width is None:
        return None
    return desc.window_center, desc.window_width, desc.voi_lut_function


def _jpeg_round_trip(shown: np.ndarray) -> np.ndarray:
    """What a client decodes from ``shown`` encoded at the server's default quality."""
    buffer = io.BytesIO()
    Image.fromarray(shown).save(buffer, "JPEG", quality=rendering.DEFAULT_JPEG_QUALITY)
    return np.asarray(Image.open(buffer))


def _to_8_bits(array: np.ndarray, bits: int) -> np.ndarray:
    top = float(2**bits - 1)
    return np.rint(np.clip(array.astype(np.float64), 0, top) * (255.0 / top)).astype(np.uint8)


# -- the instances --------------------------------------------------------------------------


def _ct_disc(size: int, seed: int) -> np.ndarray:
    """A CT slice as stored (intercept -1024): a body disc with noise, in air."""
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    noise = np.random.default_rng(seed).normal(0, 25, (size, size))
    return (np.where(inside, 1064, 24) + noise).astype(np.int16)


def ct_512() -> Dataset:
    ds = make_instance(rows=512, columns=512, RescaleIntercept=-1024, WindowCenter=40,
                       WindowWidth=400)
    ds.PixelData = _ct_disc(512, 1).tobytes()
    return ds


def monochrome1_8_bit() -> Dataset:
    """8-bit unsigned, MONOCHROME1, no window: the value range decides (C.11.2.1.2)."""
    ds = make_instance(rows=40, columns=24, PhotometricInterpretation="MONOCHROME1")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.random.default_rng(3).integers(20, 230, (40, 24), dtype=np.uint8).tobytes()
    return ds


def twelve_bits_unsigned() -> Dataset:
    ds = make_instance(rows=32, columns=32, BitsStored=12, HighBit=11, PixelRepresentation=0,
                       RescaleSlope=0.5, RescaleIntercept=-100, WindowCenter=600,
                       WindowWidth=900, VOILUTFunction="SIGMOID")
    ds.PixelData = np.random.default_rng(4).integers(0, 4096, (32, 32), dtype=np.uint16).tobytes()
    return ds


def twelve_bits_signed_multiframe() -> Dataset:
    ds = make_instance(rows=24, columns=20, frames=3, BitsStored=12, HighBit=11, seed=5,
                       WindowCenter=0, WindowWidth=1200, VOILUTFunction="LINEAR_EXACT")
    return ds


def enhanced_per_frame_rescale() -> Dataset:
    """Rescale and window per frame in the functional groups (PS3.3 C.7.6.16.2.9/.10)."""
    ds = make_instance(rows=16, columns=16, frames=2, seed=6)
    del ds.RescaleSlope, ds.RescaleIntercept
    groups = []
    for slope, intercept, center in ((1.0, 0.0, 0.0), (2.0, -500.0, 300.0)):
        transform, voi, group = Dataset(), Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        transform.RescaleType = "US"
        voi.WindowCenter, voi.WindowWidth = center, 1000.0
        group.PixelValueTransformationSequence = [transform]
        group.FrameVOILUTSequence = [voi]
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = groups
    return ds


def modality_lut_sequence() -> Dataset:
    """A Modality LUT Sequence instead of Rescale Slope/Intercept (PS3.3 C.11.1)."""
    ds = make_instance(rows=16, columns=16, PixelRepresentation=0, BitsStored=8, HighBit=7)
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelData = np.random.default_rng(7).integers(0, 256, (16, 16), dtype=np.uint16).tobytes()
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 16]
    lut.ModalityLUTType = "HU"
    lut.add_new(0x00283006, "US", [int(v) for v in (np.arange(256) ** 1.5).astype(np.uint16)])
    ds.ModalityLUTSequence = [lut]
    return ds


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Dataset]
    frame: int = 1


CASES = [
    Case("CT_small (16-bit signed, rescale, no window)", lambda: sample("CT_small.dcm")),
    Case("MR_small (explicit VR LE, dataset window)", lambda: sample("MR_small.dcm")),
    Case("MR_small_implicit", lambda: sample("MR_small_implicit.dcm")),
    Case("MR_small_bigendian", lambda: sample("MR_small_bigendian.dcm")),
    Case("MR_small_padded", lambda: sample("MR_small_padded.dcm")),
    Case("CT 512² with window", ct_512),
    Case("MONOCHROME1 8-bit", monochrome1_8_bit),
    Case("12-bit unsigned, slope 0.5, SIGMOID", twelve_bits_unsigned),
    Case("12-bit signed, frame 3 of 3, LINEAR_EXACT", twelve_bits_signed_multiframe, 3),
    Case("enhanced, frame 2 rescale and window", enhanced_per_frame_rescale, 2),
    Case("Modality LUT Sequence", modality_lut_sequence),
    Case("rtdose (32-bit, frame 7 of 15)", lambda: sample("rtdose.dcm"), 7),
    Case("RGB, odd size", lambda: sample("SC_rgb_small_odd.dcm")),
    Case("YBR_FULL_422 uncompressed", lambda: sample("SC_ybr_full_422_uncompressed.dcm")),
    Case("palette colour", lambda: sample("examples_palette.dcm")),
    Case("RLE colour, frame 2", lambda: sample("SC_rgb_rle_2frame.dcm"), 2),
    Case("JPEG 2000", lambda: sample("JPEG2000.dcm")),
    Case("MR RLE", lambda: sample("MR_small_RLE.dcm")),
    Case("Deflated", lambda: sample("image_dfl.dcm")),
]


@pytest.fixture(scope="module")
def stored(server: object) -> Stored:
    """Every case stored by STOW-RS."""
    out: Stored = {}
    for case in CASES:
        ds = case.build()
        out[case.name] = (ds, to_bytes(ds))
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:  # type: ignore[attr-defined]
        response = stow(http, [raw for _, raw in out.values()])
        assert response.status_code == 200, response.text
    return out


def _url(ds: Dataset, frame: int, resource: str) -> str:
    instance = (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")
    return f"{instance}/frames/{frame}/{resource}" if frame > 1 else f"{instance}/{resource}"


def _get_image(client: httpx.Client, url: str, media_type: str, **params: str) -> np.ndarray:
    response = client.get(url, params=params, headers={"accept": media_type})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return np.asarray(Image.open(io.BytesIO(response.content)))


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rendered_png_equals_the_full_decode(client: httpx.Client, stored: Stored, case: Case) -> None:
    ds, raw = stored[case.name]
    shown = _get_image(client, _url(ds, case.frame, "rendered"), "image/png")
    assert np.array_equal(shown, reference_pixels(raw, case.frame))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rendered_jpeg_is_the_full_decode_within_jpeg_error(client: httpx.Client, stored: Stored,
                                                            case: Case) -> None:
    ds, raw = stored[case.name]
    shown = _get_image(client, _url(ds, case.frame, "rendered"), "image/jpeg").astype(int)
    expected = _jpeg_round_trip(reference_pixels(raw, case.frame)).astype(int)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).mean() < 1.0


@pytest.mark.parametrize("window", [(-600.0, 1500.0, "LINEAR"), (300.0, 2000.0, "LINEAR_EXACT"),
                                    (40.0, 400.0, "SIGMOID"), (0.0, 1.0, "LINEAR")])
def test_requested_windows_equal_the_full_decode(client: httpx.Client, stored: Stored,
                                                 window: Window) -> None:
    for name in ("CT 512² with window", "12-bit unsigned, slope 0.5, SIGMOID"):
        ds, raw = stored[name]
        value = f"{window[0]:g},{window[1]:g},{window[2]}"
        shown = _get_image(client, _url(ds, 1, "rendered"), "image/png", window=value)
        assert np.array_equal(shown, reference_pixels(raw, 1, window)), name


def test_thumbnail_is_the_lanczos_reduction_within_resampling_error(client: httpx.Client,
                                                                  stored: Stored) -> None:
    ds, raw = stored["CT 512² with window"]
    shown = _get_image(client, _url(ds, 1, "thumbnail"), "image/png").astype(int)
    full = Image.fromarray(reference_pixels(raw, 1))
    expected = np.asarray(full.resize((128, 128), Image.Resampling.LANCZOS)).astype(int)
    assert shown.shape == expected.shape == (128, 128)
    difference = np.abs(shown - expected)
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 12


def test_thumbnail_jpeg_of_every_case_matches_its_rendering(client: httpx.Client,
                                                            stored: Stored) -> None:
    for case in CASES:
        ds, raw = stored[case.name]
        shown = _get_image(client, _url(ds, case.frame, "thumbnail"), "image/jpeg").astype(int)
        full = Image.fromarray(reference_pixels(raw, case.frame))
        scale = min(128 / full.width, 128 / full.height)
        size = (max(1, round(full.width * scale)), max(1, round(full.height * scale)))
        resized = np.asarray(full.resize(size, Image.Resampling.LANCZOS))
        expected = _jpeg_round_trip(resized).astype(int)
        assert shown.shape == expected.shape, case.name
        assert np.abs(shown - expected).mean() < 3.0, case.name  # sharp palette edges: ~2.2


class _CountingStream(io.BytesIO):
    """A blob stream that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_a_native_frame_is_read_as_its_own_byte_range() -> None:
    ds = make_instance(rows=256, columns=256, frames=8, seed=8)
    raw = to_bytes(ds)
    frame_bytes = 256 * 256 * 2
    stream = _CountingStream(raw)
    array, _ = pixels.read_frame(stream, 5)
    assert np.array_equal(array, ds.pixel_array[5])
    assert stream.bytes_read < 2 * frame_bytes  # the header and frame 6, not all 8 frames
