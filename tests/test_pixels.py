"""Pixel layer tests on real sample files shipped with pydicom (pydicom.data, offline).

Each codec is decoded with ``decode_frame_bytes`` from the file's own frames (native
slices, or encapsulated frames split by ``pydicom.encaps.generate_frames``) and
compared with a reference decoded independently: the uncompressed or lossless
sibling file where pydicom ships one (exact for lossless, a tolerance for lossy).

Transfer syntax -> sample:
  1.2 Implicit LE           MR_small_implicit.dcm vs MR_small.dcm
  1.2.1 Explicit LE         MR_small.dcm vs its raw Pixel Data bytes
  1.2.2 Explicit BE         MR_small_bigendian.dcm, rtdose_expb.dcm (32-bit, 15 frames),
                            SC_rgb_small_odd_big_endian.dcm (8-bit OW), vs LE siblings
  1.2.1.99 Deflated         image_dfl.dcm vs the pixels of its zlib-inflated body
  1.2.5 RLE                 MR_small_RLE.dcm, rtdose_rle.dcm, SC_rgb_rle*.dcm
  4.50 JPEG Baseline        SC_rgb_jpeg_dcmtk.dcm (YBR_FULL), SC_rgb_dcmtk_+eb+cy+np.dcm
                            (YBR_FULL_422), examples_ybr_color.dcm (30 frames) vs RLE
  4.51 JPEG Extended        JPGExtended.dcm vs pydicom's reference values (+ imagecodecs)
  4.57 JPEG Lossless P14    SC_rgb_jpeg_gdcm.dcm's codestream, relabelled (see test)
  4.70 JPEG Lossless SV1    SC_rgb_jpeg_gdcm.dcm vs SC_rgb_rle.dcm
  4.80 JPEG-LS Lossless     MR_small_jpeg_ls_lossless.dcm vs MR_small.dcm
  4.81 JPEG-LS Near-Lossl.  SC_rgb_jls_lossy_line/sample.dcm vs SC_rgb_rle.dcm (<= NEAR)
  4.90 JPEG 2000 Lossless   MR_small_jp2klossless.dcm vs MR_small.dcm
  4.91 JPEG 2000            SC_rgb_gdcm_KY.dcm vs SC_rgb_rle.dcm; JPEG2000.dcm (+ imagecodecs)
  4.201/202/203 HTJ2K       made here with imagecodecs' OpenJPH encoder (pydicom ships none)
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from cloudfilm.services.imaging import pixels, rendering
from cloudfilm.services.imaging.pixels import PixelDescription, decode_frame_bytes
from cloudfilm.services.imaging.rendering import RenderOptions

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"

ALL_DECODED_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    HTJ2K_LOSSLESS,
    HTJ2K_RPCL,
    HTJ2K_LOSSY,
    "1.2.840.10008.1.2.5",
]


# -- helpers ----------------------------------------------------------------------------


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom sample {name} is not available offline")
    return Path(path)


def read(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(sample(name))


def syntax(ds: pydicom.Dataset) -> str:
    return str(ds.file_meta.TransferSyntaxUID)


def file_frames(ds: pydicom.Dataset) -> list[bytes]:
    """The file's own frames, split without cloudfilm code."""
    desc = PixelDescription.from_dataset(ds)
    if pixels.is_encapsulated(syntax(ds)):
        return list(generate_frames(ds.PixelData, number_of_frames=desc.number_of_frames))
    size = len(ds.PixelData) // desc.number_of_frames
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(desc.number_of_frames)]


def decode_file_frame(name: str, index: int = 0) -> np.ndarray:
    ds = read(name)
    return decode_frame_bytes(file_frames(ds)[index], syntax(ds), PixelDescription.from_dataset(ds))


def reference(name: str) -> np.ndarray:
    """pydicom's whole-dataset decode of an uncompressed or lossless sibling."""
    return read(name).pixel_array


def png_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)


def render_png(path: Path, frame: int = 1, **options: object) -> np.ndarray:
    """render_frame to PNG (lossless), decoded back to pixels with Pillow."""
    return png_pixels(rendering.render_frame(path, frame, RenderOptions("image/png", **options)))


# -- transfer syntax facts --------------------------------------------------------------


@pytest.mark.parametrize("uid", ALL_DECODED_SYNTAXES)
def test_every_required_syntax_is_decodable(uid: str) -> None:
    assert pixels.decodable(uid)


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.100", "1.2.3.4", ""])
def test_unknown_or_video_syntaxes_are_not_decodable(uid: str) -> None:
    assert not pixels.decodable(uid)
    with pytest.raises(pixels.UnsupportedTransferSyntax):
        decode_frame_bytes(b"\x00" * 8, uid, PixelDescription.from_dataset(read("MR_small.dcm")))


def test_is_encapsulated() -> None:
    native = ALL_DECODED_SYNTAXES[:4]
    assert [pixels.is_encapsulated(uid) for uid in native] == [False] * 4
    assert all(pixels.is_encapsulated(uid) for uid in ALL_DECODED_SYNTAXES[4:])


def test_description_from_dataset() -> None:
    desc = PixelDescription.from_dataset(read("MR_small.dcm"))
    assert (desc.rows, desc.columns, desc.samples_per_pixel) == (64, 64, 1)
    assert (desc.bits_allocated, desc.bits_stored, desc.pixel_representation) == (16, 16, 1)
    assert desc.photometric_interpretation == "MONOCHROME2"
    assert (desc.window_center, desc.window_width) == (600.0, 1600.0)
    assert desc.number_of_frames == 1
    ct = PixelDescription.from_dataset(read("CT_small.dcm"))
    assert (ct.rescale_slope, ct.rescale_intercept) == (1.0, -1024.0)
    assert PixelDescription.from_dataset(read("rtdose.dcm")).number_of_frames == 15


def test_description_reads_enhanced_functional_groups() -> None:
    ds = read("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    transform = pydicom.Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 2, -7
    voi = pydicom.Dataset()
    voi.WindowCenter, voi.WindowWidth = 40, 400
    shared = pydicom.Dataset()
    shared.PixelValueTransformationSequence = [transform]
    per_frame = pydicom.Dataset()
    per_frame.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [per_frame]
    desc = PixelDescription.from_dataset(ds)
    assert (desc.rescale_slope, desc.rescale_intercept) == (2.0, -7.0)
    assert (desc.window_center, desc.window_width) == (40.0, 400.0)


# -- native syntaxes --------------------------------------------------------------------


def test_explicit_le_matches_raw_pixel_bytes() -> None:
    ds = read("MR_small.dcm")
    expected = np.frombuffer(ds.PixelData, "<i2").reshape(64, 64)
    assert np.array_equal(decode_file_frame("MR_small.dcm"), expected)


def test_implicit_le_matches_explicit_sibling() -> None:
    assert np.array_equal(decode_file_frame("MR_small_implicit.dcm"), reference("MR_small.dcm"))


@pytest.mark.parametrize(
    "big, little",
    [
        ("MR_small_bigendian.dcm", "MR_small.dcm"),
        ("SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd.dcm"),  # 8-bit stored as OW
    ],
)
def test_big_endian_matches_little_endian_sibling(big: str, little: str) -> None:
    ds = read(big)
    whole = bytes(ds.PixelData)  # single frame: the whole value, word padding included
    frame = decode_frame_bytes(whole, syntax(ds), PixelDescription.from_dataset(ds))
    assert np.array_equal(frame, reference(little))


def test_big_endian_32bit_multiframe_every_frame() -> None:
    expected = reference("rtdose.dcm")
    for index in (0, 7, 14):
        assert np.array_equal(decode_file_frame("rtdose_expb.dcm", index), expected[index])


def test_deflated_matches_inflated_body() -> None:
    """The reference is the file inflated with zlib: Pixel Data is its last element."""
    raw = sample("image_dfl.dcm").read_bytes()
    meta_length = struct.unpack("<I", raw[140:144])[0]
    body = zlib.decompress(raw[144 + meta_length :], -15)
    pixel_bytes = 512 * 512
    assert body[-pixel_bytes - 12 : -pixel_bytes] == bytes.fromhex("e07f10004f42000000000400")
    expected = np.frombuffer(body[-pixel_bytes:], np.uint8).reshape(512, 512)
    assert np.array_equal(decode_file_frame("image_dfl.dcm"), expected)


def test_one_bit_frame_round_trips_to_native_bytes() -> None:
    ds = read("liver_1frame.dcm")
    desc = PixelDescription.from_dataset(ds)
    frame = decode_frame_bytes(ds.PixelData, syntax(ds), desc)
    assert frame.shape == (512, 512) and set(np.unique(frame)) == {0, 1}
    assert pixels.native_frame_bytes(frame, desc) == bytes(ds.PixelData)


# -- RLE --------------------------------------------------------------------------------


def test_rle_grayscale_equals_uncompressed() -> None:
    assert np.array_equal(decode_file_frame("MR_small_RLE.dcm"), reference("MR_small.dcm"))


def test_rle_32bit_multiframe_equals_uncompressed() -> None:
    expected = reference("rtdose.dcm")
    for index in (0, 14):
        assert np.array_equal(decode_file_frame("rtdose_rle.dcm", index), expected[index])


def test_rle_colour_frames() -> None:
    first = decode_file_frame("SC_rgb_rle_2frame.dcm", 0)
    second = decode_file_frame("SC_rgb_rle_2frame.dcm", 1)
    assert first.shape == (100, 100, 3)
    assert np.array_equal(first, reference("SC_rgb_rle.dcm"))
    assert np.array_equal(second, 255 - first)  # how pydicom made the second frame


# -- JPEG -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, mean_tolerance",
    [
        ("SC_rgb_jpeg_dcmtk.dcm", 1.0),  # YBR_FULL, no subsampling
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 4.0),  # YBR_FULL_422, chroma subsampled
        ("SC_rgb_dcmtk_+eb+cr.dcm", 0.5),  # RGB components
    ],
)
def test_jpeg_baseline_close_to_lossless_original(name: str, mean_tolerance: float) -> None:
    frame = decode_file_frame(name).astype(int)
    original = reference("SC_rgb_rle.dcm").astype(int)
    assert frame.shape == original.shape == (100, 100, 3)
    assert np.abs(frame - original).mean() < mean_tolerance
    # colour really came back as RGB: channel means match the original's
    assert np.allclose(frame.mean(axis=(0, 1)), original.mean(axis=(0, 1)), atol=3)


def test_jpeg_baseline_multiframe_ybr() -> None:
    ds = read("examples_ybr_color.dcm")
    frames = file_frames(ds)
    assert len(frames) == 30
    desc = PixelDescription.from_dataset(ds)
    expected = ds.pixel_array
    for index in (0, 29):
        assert np.array_equal(decode_frame_bytes(frames[index], syntax(ds), desc), expected[index])


def test_jpeg_extended_12bit_reference_values() -> None:
    """pydicom's pixel reference for JPGExtended.dcm (JPGE_16_12_1_0_1F_M2)."""
    frame = decode_file_frame("JPGExtended.dcm")
    assert frame.shape == (1024, 256) and frame.dtype == np.uint16
    assert frame[420, 140] == 244
    assert frame[230, 120] == 95
    assert frame.max() < 4096  # 12-bit samples


def test_jpeg_extended_matches_independent_decoder() -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    ds = read("JPGExtended.dcm")
    other = imagecodecs.jpeg_decode(file_frames(ds)[0]).astype(int)
    assert np.abs(decode_file_frame("JPGExtended.dcm").astype(int) - other).max() <= 1


def _jpeg_markers(codestream: bytes) -> tuple[int, int]:
    """(SOF marker, Ss of the first SOS) of a JPEG codestream."""
    sof = next(m for m in range(0xC0, 0xD0) if bytes([0xFF, m]) in codestream[:2000])
    sos = codestream.index(b"\xff\xda")
    components = codestream[sos + 4]
    return sof, codestream[sos + 5 + 2 * components]


def test_jpeg_lossless_sv1_equals_original() -> None:
    assert np.array_equal(decode_file_frame("SC_rgb_jpeg_gdcm.dcm"), reference("SC_rgb_rle.dcm"))


def test_jpeg_lossless_process14_equals_original() -> None:
    """pydicom ships no 4.57 sample. A Process 14 SV1 codestream (SOF3, predictor 1)
    is also a valid 4.57 codestream (4.57 allows any predictor), so the SV1 file's
    frame is decoded under 4.57 here."""
    ds = read("SC_rgb_jpeg_gdcm.dcm")
    frame = file_frames(ds)[0]
    assert _jpeg_markers(frame) == (0xC3, 1)
    decoded = decode_frame_bytes(frame, "1.2.840.10008.1.2.4.57", PixelDescription.from_dataset(ds))
    assert np.array_equal(decoded, reference("SC_rgb_rle.dcm"))


# -- JPEG-LS ----------------------------------------------------------------------------


def test_jpeg_ls_lossless_equals_uncompressed() -> None:
    frame = decode_file_frame("MR_small_jpeg_ls_lossless.dcm")
    assert np.array_equal(frame, reference("MR_small.dcm"))


def _jpeg_ls_near(codestream: bytes) -> int:
    sos = codestream.index(b"\xff\xda")
    return codestream[sos + 5 + 2 * codestream[sos + 4]]


@pytest.mark.parametrize("name", ["SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm"])
def test_jpeg_ls_near_lossless_within_near(name: str) -> None:
    """Near-lossless guarantees |error| <= NEAR, read from the codestream's SOS."""
    near = _jpeg_ls_near(file_frames(read(name))[0])
    assert near > 0
    error = np.abs(decode_file_frame(name).astype(int) - reference("SC_rgb_rle.dcm").astype(int))
    assert 0 < error.max() <= near


# -- JPEG 2000 and HTJ2K ----------------------------------------------------------------


def test_jpeg2000_lossless_equals_uncompressed() -> None:
    assert np.array_equal(decode_file_frame("MR_small_jp2klossless.dcm"), reference("MR_small.dcm"))


def test_jpeg2000_rgb_equals_original() -> None:
    assert np.array_equal(decode_file_frame("SC_rgb_gdcm_KY.dcm"), reference("SC_rgb_rle.dcm"))


def test_jpeg2000_signed_matches_independent_decoder() -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    ds = read("JPEG2000.dcm")
    ours = decode_file_frame("JPEG2000.dcm")
    assert ours.dtype == np.int16 and ours.min() < 0
    assert np.array_equal(ours, imagecodecs.jpeg2k_decode(file_frames(ds)[0]))


def _htj2k(array: np.ndarray, **options: object) -> bytes:
    imagecodecs = pytest.importorskip("imagecodecs")
    if not imagecodecs.HTJ2K.available:
        pytest.skip("imagecodecs was built without the HTJ2K (OpenJPH) codec")
    codestream = imagecodecs.htj2k_encode(array, **options)
    assert b"\xff\x50" in codestream[:200]  # CAP marker: a Part 15 (HT) codestream
    return codestream


def test_htj2k_lossless_equals_original() -> None:
    """pydicom ships no HTJ2K sample: MR_small's pixels are HT-encoded here with
    imagecodecs' OpenJPH encoder (reversible), then decoded as 4.201."""
    ds = read("MR_small.dcm")
    codestream = _htj2k(ds.pixel_array, reversible=True)
    decoded = decode_frame_bytes(codestream, HTJ2K_LOSSLESS, PixelDescription.from_dataset(ds))
    assert np.array_equal(decoded, ds.pixel_array)


def test_htj2k_rpcl_colour_equals_original() -> None:
    """SC_rgb_rle's pixels HT-encoded here (imagecodecs/OpenJPH, reversible, RPCL
    progression as 4.202 requires, with TLM), decoded as 4.202."""
    ds = read("SC_rgb_rle.dcm")
    codestream = _htj2k(ds.pixel_array, reversible=True, tlm=True)
    cod = codestream.index(b"\xff\x52")
    assert codestream[cod + 5] == 2  # COD progression order: RPCL
    decoded = decode_frame_bytes(codestream, HTJ2K_RPCL, PixelDescription.from_dataset(ds))
    assert np.array_equal(decoded, ds.pixel_array)


def test_htj2k_lossy_close_to_original() -> None:
    """MR_small's pixels HT-encoded here irreversibly (imagecodecs/OpenJPH), as 4.203."""
    ds = read("MR_small.dcm")
    codestream = _htj2k(ds.pixel_array, reversible=False)
    decoded = decode_frame_bytes(codestream, HTJ2K_LOSSY, PixelDescription.from_dataset(ds))
    error = np.abs(decoded.astype(int) - ds.pixel_array.astype(int))
    assert decoded.shape == (64, 64) and error.mean() < 2.0


def _htj2k_file(tmp_path: Path) -> Path:
    """MR_small.dcm re-encoded as an HTJ2K Lossless Part-10 file (made here)."""
    ds = read("MR_small.dcm")
    ds.PixelData = encapsulate([_htj2k(ds.pixel_array, reversible=True)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = HTJ2K_LOSSLESS
    path = tmp_path / "mr_htj2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# -- frames and native bytes ------------------------------------------------------------


def test_iter_frame_bytes_matches_pydicom_frames() -> None:
    ds = read("SC_rgb_rle_2frame.dcm")
    assert list(pixels.iter_frame_bytes(ds)) == file_frames(ds)
    native = read("rtdose.dcm")
    frames = list(pixels.iter_frame_bytes(native))
    assert len(frames) == 15 and b"".join(frames) == bytes(native.PixelData)


def test_native_frame_bytes_of_decoded_big_endian_equal_little_endian_bytes() -> None:
    ds = read("MR_small_bigendian.dcm")
    desc = PixelDescription.from_dataset(ds)
    frame = decode_frame_bytes(ds.PixelData, syntax(ds), desc)
    assert pixels.native_frame_bytes(frame, desc) == bytes(read("MR_small.dcm").PixelData)


def test_native_frame_bytes_of_ybr_jpeg_are_rgb_interleaved() -> None:
    ds = read("SC_rgb_dcmtk_+eb+cy+np.dcm")
    desc = PixelDescription.from_dataset(ds)
    frame = decode_frame_bytes(file_frames(ds)[0], syntax(ds), desc)
    out = pixels.decoded_description(desc)
    assert out.photometric_interpretation == "RGB" and out.planar_configuration == 0
    data = pixels.native_frame_bytes(frame, out)
    assert data == frame.astype(np.uint8).tobytes() and len(data) == 100 * 100 * 3
    assert data[:3] == bytes(frame[0, 0])  # R, G, B of the first pixel, interleaved


def test_native_frame_bytes_rejects_wrong_size() -> None:
    desc = PixelDescription.from_dataset(read("MR_small.dcm"))
    with pytest.raises(pixels.PixelDataError):
        pixels.native_frame_bytes(np.zeros((32, 32), np.int16), desc)


# -- transcoding to Explicit VR Little Endian -------------------------------------------


def transcode(path: Path) -> pydicom.Dataset:
    data = pixels.to_explicit_little_endian(path)
    assert data[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(data))
    assert syntax(ds) == EXPLICIT_LE
    return ds


@pytest.mark.parametrize(
    "name, original",
    [
        ("MR_small_implicit.dcm", "MR_small.dcm"),
        ("MR_small_bigendian.dcm", "MR_small.dcm"),
        ("MR_small_RLE.dcm", "MR_small.dcm"),
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),
        ("SC_rgb_gdcm_KY.dcm", "SC_rgb_rle.dcm"),
        ("rtdose_rle.dcm", "rtdose.dcm"),
        ("rtdose_expb.dcm", "rtdose.dcm"),
    ],
)
def test_to_explicit_le_lossless_round_trip(name: str, original: str) -> None:
    source = read(name)
    out = transcode(sample(name))
    assert out.SOPInstanceUID == source.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
    assert not out["PixelData"].is_undefined_length
    expected = reference(original)
    assert np.array_equal(out.pixel_array, expected)
    little_endian = expected.dtype.newbyteorder("<")
    assert bytes(out.PixelData) == np.ascontiguousarray(expected, little_endian).tobytes()


def test_to_explicit_le_deflated_and_uncompressed_keep_pixel_bytes() -> None:
    for name in ("image_dfl.dcm", "CT_small.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        source, out = read(name), transcode(sample(name))
        assert bytes(out.PixelData) == bytes(source.PixelData)
        assert out.PhotometricInterpretation == source.PhotometricInterpretation


def test_to_explicit_le_big_endian_keeps_numeric_values() -> None:
    out = transcode(sample("rtdose_expb.dcm"))
    little = read("rtdose.dcm")
    assert out.DoseGridScaling == little.DoseGridScaling
    assert list(out.GridFrameOffsetVector) == list(little.GridFrameOffsetVector)


def test_to_explicit_le_big_endian_swaps_other_binary_values(tmp_path: Path) -> None:
    """No shipped Big Endian sample has OW/OF values besides Pixel Data, so two are
    added (big endian, as the file's encoding requires) to MR_small_bigendian.dcm."""
    ds = read("MR_small_bigendian.dcm")
    ds.add_new(0x00091010, "LO", "CLOUDFILM TEST")  # private creator
    ds.add_new(0x00091001, "OW", struct.pack(">4H", 1, 2, 3, 0x1234))
    item = pydicom.Dataset()
    item.add_new(0x00091010, "LO", "CLOUDFILM TEST")
    item.add_new(0x00091002, "OF", struct.pack(">2f", 1.5, -2.25))
    ds.add_new(0x00091003, "SQ", [item])
    path = tmp_path / "big.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
    out = transcode(path)
    assert out[0x00091001].value == struct.pack("<4H", 1, 2, 3, 0x1234)
    assert out[0x00091003][0][0x00091002].value == struct.pack("<2f", 1.5, -2.25)
    assert np.array_equal(out.pixel_array, reference("MR_small.dcm"))


def test_to_explicit_le_ybr_jpeg_becomes_rgb() -> None:
    name = "SC_rgb_dcmtk_+eb+cy+np.dcm"
    assert read(name).PhotometricInterpretation == "YBR_FULL_422"
    out = transcode(sample(name))
    assert out.PhotometricInterpretation == "RGB" and out.PlanarConfiguration == 0
    assert len(out.PixelData) == 100 * 100 * 3
    assert np.array_equal(out.pixel_array, decode_file_frame(name))


def test_to_explicit_le_flags_a_lossy_source(tmp_path: Path) -> None:
    """A JPEG Baseline file that forgot (0028,2110) gets "01" (PS3.3 C.7.6.1.1.5)."""
    source = read("SC_rgb_jpeg_dcmtk.dcm")
    del source.LossyImageCompression
    path = tmp_path / "unflagged.dcm"
    source.save_as(path, enforce_file_format=True)
    assert "LossyImageCompression" not in pydicom.dcmread(path)
    assert transcode(path).LossyImageCompression == "01"
    assert "LossyImageCompression" not in transcode(sample("MR_small_RLE.dcm"))


def test_to_explicit_le_multiframe_jpeg() -> None:
    out = transcode(sample("examples_ybr_color.dcm"))
    assert out.NumberOfFrames == 30 and out.PhotometricInterpretation == "RGB"
    assert np.array_equal(out.pixel_array[29], decode_file_frame("examples_ybr_color.dcm", 29))


def test_to_explicit_le_htj2k_file(tmp_path: Path) -> None:
    out = transcode(_htj2k_file(tmp_path))
    assert np.array_equal(out.pixel_array, reference("MR_small.dcm"))


def test_to_explicit_le_non_image_object() -> None:
    source = read("rtplan.dcm")
    assert syntax(source) == "1.2.840.10008.1.2"
    out = transcode(sample("rtplan.dcm"))
    assert "PixelData" not in out
    assert out == source  # every element, sequences included, survives


# -- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "media_type, fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG"), ("image/gif", "GIF")]
)
def test_render_frame_formats_and_viewport(media_type: str, fmt: str) -> None:
    data = rendering.render_frame(
        sample("CT_small.dcm"), 1, RenderOptions(media_type=media_type, viewport=(64, 32))
    )
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == fmt
    assert image.size == (32, 32)  # 128x128 fitted inside 64x32


def test_render_viewport_keeps_aspect_ratio() -> None:
    data = rendering.render_frame(
        sample("JPEG2000.dcm"), 1, RenderOptions(media_type="image/png", viewport=(100, 100))
    )
    assert Image.open(io.BytesIO(data)).size == (25, 100)  # 256 wide, 1024 high


def test_render_lung_and_bone_windows_differ() -> None:
    path = sample("CT_small.dcm")
    lung = render_png(path, window=(-600, 1500, "LINEAR"))
    bone = render_png(path, window=(300, 1500, "LINEAR"))
    assert lung.shape == bone.shape == (128, 128)
    assert lung.mean() > bone.mean() + 20  # a lower centre shows the same tissue brighter


def test_render_applies_rescale_and_linear_window_exactly() -> None:
    ct = read("CT_small.dcm")
    center, width = 40.0, 400.0
    shown = render_png(sample("CT_small.dcm"), window=(center, width, "LINEAR"))
    hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    expected = np.rint(np.clip((hu - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    assert np.array_equal(shown, expected.astype(np.uint8))


def test_render_uses_dataset_window_then_min_max() -> None:
    mr = sample("MR_small.dcm")  # WindowCenter 600, WindowWidth 1600
    default = rendering.render_frame(mr, 1, RenderOptions("image/png"))
    explicit = rendering.render_frame(mr, 1, RenderOptions("image/png", (600, 1600, "LINEAR")))
    other = rendering.render_frame(mr, 1, RenderOptions("image/png", (100, 200, "LINEAR")))
    assert default == explicit != other
    ct = png_pixels(rendering.render_frame(sample("CT_small.dcm"), 1, RenderOptions("image/png")))
    assert (ct.min(), ct.max()) == (0, 255)  # no window in CT_small: full value range


def test_render_monochrome1_is_inverted() -> None:
    ds = read("MR_small.dcm")
    desc = PixelDescription.from_dataset(ds)
    options = RenderOptions("image/png")
    mono2 = png_pixels(rendering.render_array(ds.pixel_array, desc, options)).astype(int)
    inverted = replace(desc, photometric_interpretation="MONOCHROME1")
    mono1 = png_pixels(rendering.render_array(ds.pixel_array, inverted, options)).astype(int)
    assert np.abs(mono1 - (255 - mono2)).max() <= 1  # rounding of .5 only
    assert np.abs(mono1 - mono2).max() > 100


def test_window_functions_follow_ps3_3() -> None:
    x = np.array([-1.0, -0.5, 0.0, 99.5, 199.5, 200.0, 1000.0])
    linear = rendering.apply_window(x, 100.0, 201.0, "LINEAR")
    # C.11.2.1.2.1: x <= c-0.5-(w-1)/2 -> 0; x > c-0.5+(w-1)/2 -> 255
    assert linear[0] == linear[1] == 0 and linear[5] == linear[6] == 255
    assert linear[3] == pytest.approx(127.5) and linear[4] == pytest.approx(255)
    points = np.array([0.0, 50.0, 100.0, 150.0])
    exact = rendering.apply_window(points, 100.0, 100.0, "LINEAR_EXACT")
    assert list(exact) == pytest.approx([0, 0, 127.5, 255])
    sigmoid = rendering.apply_window(np.array([100.0, 150.0]), 100.0, 100.0, "SIGMOID")
    assert sigmoid[0] == pytest.approx(127.5)
    assert sigmoid[1] == pytest.approx(255 / (1 + np.exp(-2)))


def test_render_rgb_passes_through() -> None:
    shown = render_png(sample("SC_rgb_rle.dcm"), window=(0, 1, "LINEAR_EXACT"))
    assert np.array_equal(shown, reference("SC_rgb_rle.dcm"))


def test_render_palette_colour_and_deflated() -> None:
    palette = render_png(sample("examples_palette.dcm"))
    assert palette.shape == (350, 800, 3)
    assert np.abs(palette[..., 0].astype(int) - palette[..., 2]).max() > 50  # real colour
    deflated = render_png(sample("image_dfl.dcm"))
    assert deflated.shape == (512, 512) and deflated.std() > 10


def test_render_multiframe_and_frame_numbers(tmp_path: Path) -> None:
    path = sample("SC_rgb_rle_2frame.dcm")
    first = png_pixels(rendering.render_frame(path, 1, RenderOptions("image/png")))
    second = png_pixels(rendering.render_frame(path, 2, RenderOptions("image/png")))
    assert np.array_equal(second, 255 - first)
    for bad in (0, 3):
        with pytest.raises(pixels.FrameNumberError):
            rendering.render_frame(path, bad, RenderOptions())
    with pytest.raises(pixels.PixelDataError):
        rendering.render_frame(sample("rtplan.dcm"), 1, RenderOptions())
    htj2k = png_pixels(rendering.render_frame(_htj2k_file(tmp_path), 1, RenderOptions("image/png")))
    mr = png_pixels(rendering.render_frame(sample("MR_small.dcm"), 1, RenderOptions("image/png")))
    assert np.array_equal(htj2k, mr)


def test_render_jpeg_quality_changes_size() -> None:
    path = sample("CT_small.dcm")
    low = rendering.render_frame(path, 1, RenderOptions(quality=5))
    high = rendering.render_frame(path, 1, RenderOptions(quality=95))
    assert len(low) < len(high)


def test_render_source_region_crops_and_flips() -> None:
    path = sample("SC_rgb_rle.dcm")
    original = reference("SC_rgb_rle.dcm")
    region = rendering.parse_viewport_region("100,100,10,20,30,40")
    assert region == (10, 20, 30, 40)
    crop = png_pixels(rendering.render_frame(path, 1, RenderOptions("image/png", region=region)))
    assert np.array_equal(crop, original[20:60, 10:40])
    flipped = render_png(path, region=(40, 20, -30, 40))
    assert np.array_equal(flipped, original[20:60, 10:40][:, ::-1])


# -- parameter parsing ------------------------------------------------------------------


def test_parse_window() -> None:
    assert rendering.parse_window("40,400") == (40.0, 400.0, "LINEAR")
    assert rendering.parse_window(" -600.5 , 1500 , sigmoid ") == (-600.5, 1500.0, "SIGMOID")
    assert rendering.parse_window("0,0.5,LINEAR_EXACT") == (0.0, 0.5, "LINEAR_EXACT")


@pytest.mark.parametrize(
    "value, message",
    [
        ("40", "center,width"),
        ("1,2,3,4", "center,width"),
        ("abc,400", "window center must be a number"),
        ("40,wide", "window width must be a number"),
        ("nan,400", "finite"),
        ("40,0.5", ">= 1 for LINEAR"),
        ("40,0,SIGMOID", "> 0"),
        ("40,400,CUBIC", "window function"),
    ],
)
def test_parse_window_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rendering.parse_window(value)


def test_parse_viewport() -> None:
    assert rendering.parse_viewport("512,256") == (512, 256)
    assert rendering.parse_viewport("512,256,0,0,100,100") == (512, 256)
    assert rendering.parse_viewport_region("512,256") is None
    assert rendering.parse_viewport_region("512,256,,,,") == (0, 0, None, None)


@pytest.mark.parametrize(
    "value, message",
    [
        ("512", "vw,vh"),
        ("512,256,1", "vw,vh"),
        ("a,256", "viewport width must be an integer"),
        ("512,1.5", "viewport height must be an integer"),
        ("0,256", "viewport sides"),
        ("-1,256", "viewport sides"),
        ("100000,256", "viewport sides"),
        ("512,256,0,0,0,10", "non-zero"),
        ("512,256,x,0,10,10", "sx must be an integer"),
    ],
)
def test_parse_viewport_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rendering.parse_viewport(value)


def test_render_options_are_validated() -> None:
    with pytest.raises(ValueError, match="media type"):
        RenderOptions(media_type="image/bmp")
    with pytest.raises(ValueError, match="quality"):
        RenderOptions(quality=0)
    with pytest.raises(ValueError, match="window function"):
        RenderOptions(window=(1.0, 2.0, "CUBIC"))
