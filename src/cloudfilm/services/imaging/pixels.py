"""Pixel layer: decode every supported transfer syntax and transcode to Explicit VR LE.

All codec work is delegated to pydicom 3's decoders (``pydicom.pixels``) and their
plugins (pylibjpeg + libjpeg/openjpeg/rle, pyjpegls, Pillow); nothing here parses a
codestream.

Standards:
* PS3.5 §8.2 (native vs encapsulated Pixel Data), §7.3 (byte ordering), Annex A.4
  (encapsulated transfer syntaxes: JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE).
* PS3.3 C.7.6.3 (Image Pixel Module), C.7.6.3.1.2 (Photometric Interpretation),
  C.7.6.3.1.3 (Planar Configuration), C.7.6.1.1.5 (Lossy Image Compression).
* PS3.3 C.7.6.16.2.9 / C.7.6.16.2.10 (Pixel Value Transformation and Frame VOI LUT
  functional groups of enhanced multi-frame objects).
* PS3.10 §7.1 (File Meta Information).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, cast, overload

import numpy
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import Decoder, get_decoder  # pydicom.pixels has no __all__
from pydicom.pixels.utils import pack_bits, pixel_array, unpack_bits
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

EXPLICIT_VR_LITTLE_ENDIAN = str(ExplicitVRLittleEndian)

#: A Part-10 object: a file name, or a seekable binary stream (a stored blob,
#: services/archive/retrieve.py), read from its start.
Source = str | os.PathLike[str] | BinaryIO

#: Transfer syntaxes whose Pixel Data is native (not encapsulated), PS3.5 §8.2.
NATIVE_SYNTAXES: frozenset[str] = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)

#: Encapsulated transfer syntaxes we decode, PS3.5 Annex A.4.
ENCAPSULATED_SYNTAXES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.201",  # HTJ2K (Lossless Only)
        "1.2.840.10008.1.2.4.202",  # HTJ2K with RPCL Options (Lossless Only)
        "1.2.840.10008.1.2.4.203",  # HTJ2K
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)

#: Transfer syntaxes that are always lossy (DCT based), PS3.3 C.7.6.1.1.5.
ALWAYS_LOSSY_SYNTAXES: frozenset[str] = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
)

#: Colour spaces that decode to RGB (pydicom converts YBR_FULL[_422]; JPEG 2000
#: decoders undo the ICT/RCT), PS3.3 C.7.6.3.1.2.
_DECODES_TO_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "RGB"})

#: (5200,9230) Per-frame and (5200,9229) Shared Functional Groups Sequence, PS3.3 C.7.6.16.
_PER_FRAME_GROUPS, _SHARED_GROUPS = 0x52009230, 0x52009229

#: Byte-swap word size for raw binary VRs when leaving Big Endian, PS3.5 §7.3.
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


class PixelDataError(ValueError):
    """Pixel data is missing, malformed or cannot be decoded."""


class UnsupportedTransferSyntax(PixelDataError):
    """No decoder is available for the transfer syntax."""


class FrameNumberError(PixelDataError, IndexError):
    """A frame index is outside 1..NumberOfFrames."""


@dataclass(frozen=True)
class PixelDescription:
    """Image Pixel Module values (PS3.3 C.7.6.3) needed to decode and render one frame.

    ``pixel_vr`` only matters for 8-bit Explicit VR Big Endian data stored as OW,
    whose bytes are swapped per 16-bit word (PS3.5 §7.3); ``voi_lut_function``
    is (0028,1056) VOI LUT Function (PS3.3 C.11.2.1.3).
    """

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int
    rescale_slope: float
    rescale_intercept: float
    window_center: float | None
    window_width: float | None
    voi_lut_function: str = "LINEAR"
    pixel_vr: str = "OB"

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset, frame_index: int = 0) -> PixelDescription:
        """Build from a dataset; rescale/window fall back to the functional groups
        of enhanced objects (PS3.3 C.7.6.16.2.9, C.7.6.16.2.10) for ``frame_index``."""
        if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
            raise PixelDataError("dataset lacks Rows, Columns or Bits Allocated")
        samples = _int(ds.get("SamplesPerPixel"), 1)
        bits_allocated = _int(ds.get("BitsAllocated"), 0)
        transform = _frame_group(ds, "PixelValueTransformationSequence", frame_index)
        voi = _frame_group(ds, "FrameVOILUTSequence", frame_index)
        return cls(
            rows=_int(ds.get("Rows"), 0),
            columns=_int(ds.get("Columns"), 0),
            samples_per_pixel=samples,
            bits_allocated=bits_allocated,
            bits_stored=_int(ds.get("BitsStored"), bits_allocated),
            pixel_representation=_int(ds.get("PixelRepresentation"), 0),
            photometric_interpretation=_photometric(ds, samples),
            planar_configuration=_int(ds.get("PlanarConfiguration"), 0),
            number_of_frames=max(1, _int(ds.get("NumberOfFrames"), 1)),
            rescale_slope=_first_float(_pick(ds, transform, "RescaleSlope"), 1.0),
            rescale_intercept=_first_float(_pick(ds, transform, "RescaleIntercept"), 0.0),
            window_center=_first_float(_pick(ds, voi, "WindowCenter"), None),
            window_width=_first_float(_pick(ds, voi, "WindowWidth"), None),
            voi_lut_function=str(_pick(ds, voi, "VOILUTFunction") or "LINEAR").upper(),
            pixel_vr=_pixel_vr(ds),
        )


# -- small dataset readers ---------------------------------------------------------


def _int(value: Any, default: int) -> int:
    """An IS/US value as int, ``default`` when absent or malformed."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@overload
def _first_float(value: Any, default: float) -> float: ...


@overload
def _first_float(value: Any, default: None) -> float | None: ...


def _first_float(value: Any, default: float | None) -> float | None:
    """First value of a (possibly multi-valued) DS as a finite float."""
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return default
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _photometric(ds: pydicom.Dataset, samples: int) -> str:
    value = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    return value or ("MONOCHROME2" if samples == 1 else "RGB")


def _pixel_vr(ds: pydicom.Dataset) -> str:
    """VR of Pixel Data without loading a deferred value."""
    if 0x7FE00010 not in ds:
        return "OB"
    return str(getattr(ds.get_item(0x7FE00010, keep_deferred=True), "VR", None) or "OB")


def _frame_group(ds: pydicom.Dataset, sequence: str, frame_index: int) -> Dataset | None:
    """Item of a functional group macro for one frame: per-frame wins over shared."""
    if _PER_FRAME_GROUPS not in ds and _SHARED_GROUPS not in ds:  # not an enhanced object
        return None
    for keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(keyword)
        if groups is not None and 0 <= index < len(groups):
            items = groups[index].get(sequence)
            if items:
                item: Dataset = items[0]
                return item
    return None


def _pick(ds: pydicom.Dataset, group: Dataset | None, keyword: str) -> Any:
    """Top-level value if present, else the functional-group value."""
    value = ds.get(keyword)
    if value in (None, "") and group is not None:
        value = group.get(keyword)
    return value


# -- transfer syntax facts ----------------------------------------------------------


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    """True unless Pixel Data is native under this syntax (PS3.5 §8.2, Annex A.4)."""
    return str(transfer_syntax_uid).strip() not in NATIVE_SYNTAXES


def decodable(transfer_syntax_uid: str) -> bool:
    """True when a pydicom decoder with an installed plugin handles this syntax."""
    uid = str(transfer_syntax_uid).strip()
    if uid not in NATIVE_SYNTAXES and uid not in ENCAPSULATED_SYNTAXES:
        return False
    try:
        return get_decoder(UID(uid)).is_available
    except NotImplementedError:
        return False


def _decoder(transfer_syntax_uid: str) -> Decoder:
    uid = str(transfer_syntax_uid).strip()
    if not decodable(uid):
        raise UnsupportedTransferSyntax(f"no pixel decoder for transfer syntax {uid}")
    return get_decoder(UID(uid))


def decoded_description(desc: PixelDescription) -> PixelDescription:
    """What a frame looks like after decoding: YBR_* colour is RGB, interleaved."""
    if desc.samples_per_pixel == 1:
        return desc
    pi = desc.photometric_interpretation
    return replace(
        desc,
        photometric_interpretation="RGB" if pi in _DECODES_TO_RGB else pi,
        planar_configuration=0,
    )


# -- decoding -----------------------------------------------------------------------


def _decode_options(desc: PixelDescription, transfer_syntax_uid: str) -> dict[str, Any]:
    """Decoder keyword options describing ONE frame (pydicom decoder options)."""
    options: dict[str, Any] = {
        "rows": desc.rows,
        "columns": desc.columns,
        "samples_per_pixel": desc.samples_per_pixel,
        "bits_allocated": desc.bits_allocated,
        "bits_stored": desc.bits_stored,
        "pixel_representation": desc.pixel_representation,
        "photometric_interpretation": desc.photometric_interpretation,
        "planar_configuration": desc.planar_configuration,
        "number_of_frames": 1,
        "pixel_keyword": "PixelData",
    }
    if str(transfer_syntax_uid) == ExplicitVRBigEndian:
        options["pixel_vr"] = desc.pixel_vr
    return options


def decode_frame_bytes(
    frame: bytes, transfer_syntax_uid: str, desc: PixelDescription
) -> numpy.ndarray:
    """Decode ONE frame's bytes (native or one encapsulated frame, fragments already
    joined) to an array (rows, cols) or (rows, cols, samples).

    Colour comes back RGB, interleaved (see :func:`decoded_description`). For
    Explicit VR Big Endian, multi-byte samples are big endian and 8-bit data follows
    ``desc.pixel_vr`` (OW: swapped per 16-bit word, PS3.5 §7.3).
    """
    decoder = _decoder(transfer_syntax_uid)
    source = encapsulate([bytes(frame)]) if decoder.is_encapsulated else frame
    try:
        array, _ = decoder.as_array(
            source, index=0, **_decode_options(desc, transfer_syntax_uid)
        )
    except (ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise PixelDataError(f"cannot decode frame: {exc}") from exc
    return array


def _native_dtype(desc: PixelDescription) -> numpy.dtype:
    if desc.bits_allocated not in (8, 16, 32, 64):
        raise PixelDataError(f"Bits Allocated {desc.bits_allocated} has no native dtype")
    kind = "i" if desc.pixel_representation == 1 else "u"
    return numpy.dtype(f"<{kind}{desc.bits_allocated // 8}")


def native_frame_bytes(array: numpy.ndarray, desc: PixelDescription) -> bytes:
    """Uncompressed little-endian bytes of a decoded frame, as Explicit VR Little
    Endian PixelData would hold it (colour as interleaved / planar config 0; YBR_*
    decoded frames become RGB).

    The array must be a decoded frame (colour already interleaved RGB, as returned
    by :func:`decode_frame_bytes`); 1-bit data is packed LSB first (PS3.5 §8.1.1).
    No trailing padding is added.
    """
    expected = desc.rows * desc.columns * desc.samples_per_pixel
    if array.size != expected:
        raise PixelDataError(f"array has {array.size} values, frame needs {expected}")
    if desc.bits_allocated == 1:
        return pack_bits(numpy.ascontiguousarray(array).ravel())
    return numpy.ascontiguousarray(array, dtype=_native_dtype(desc)).tobytes()


# -- frames of a dataset ------------------------------------------------------------


def _transfer_syntax(ds: pydicom.Dataset) -> str:
    """(0002,0010), else the encoding pydicom found while reading the file."""
    file_meta = getattr(ds, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if uid:
        return str(uid).strip()
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        raise PixelDataError("dataset has no (0002,0010) Transfer Syntax UID")
    if implicit:
        return str(ImplicitVRLittleEndian)
    return str(ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _native_frame_bits(desc: PixelDescription) -> int:
    """Bits per native frame; YBR_FULL_422 stores 2 samples per pixel (C.7.6.3.1.2)."""
    samples = desc.samples_per_pixel
    if desc.photometric_interpretation == "YBR_FULL_422" and samples == 3:
        samples = 2
    return desc.rows * desc.columns * samples * desc.bits_allocated


def iter_frame_bytes(ds: pydicom.Dataset) -> Iterator[bytes]:
    """Each frame's bytes as :func:`decode_frame_bytes` takes them (PS3.5 §8.2, A.4)."""
    if "PixelData" not in ds:
        raise PixelDataError("dataset has no (7FE0,0010) Pixel Data")
    desc = PixelDescription.from_dataset(ds)
    if is_encapsulated(_transfer_syntax(ds)):
        yield from generate_frames(
            ds.PixelData,
            number_of_frames=desc.number_of_frames,
            extended_offsets=_extended_offsets(ds),
        )
        return
    yield from _native_frames(bytes(ds.PixelData), desc)


def _extended_offsets(ds: pydicom.Dataset) -> tuple[bytes, bytes] | None:
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        return ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths
    return None


def _native_frames(value: bytes, desc: PixelDescription) -> Iterator[bytes]:
    bits = _native_frame_bits(desc)
    if bits % 8:  # 1-bit frames not ending on a byte boundary
        flat = cast(numpy.ndarray, unpack_bits(value))  # an array: as_array defaults to True
        for index in range(desc.number_of_frames):
            yield pack_bits(flat[index * bits : (index + 1) * bits])
        return
    size = bits // 8
    if len(value) < size * desc.number_of_frames:
        raise PixelDataError("Pixel Data is shorter than its frames need")
    for index in range(desc.number_of_frames):
        # an odd-length frame takes the next byte too (ignored by the decoder), so a
        # single padded 8-bit Big Endian OW frame keeps its last 16-bit word whole
        yield value[index * size : (index + 1) * size + (size % 2)]


# -- reading one frame from a file --------------------------------------------------


def _read(source: Source, **options: Any) -> pydicom.Dataset:
    """dcmread from the start of ``source`` (a stream may have been read already)."""
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
    return pydicom.dcmread(source, **options)


def read_frame(source: Source, index: int) -> tuple[numpy.ndarray, Dataset]:
    """Decode frame ``index`` (0-based) of a Part-10 object without loading other frames.

    Native Pixel Data is read as one range (the frame's bytes only) after one header
    parse; encapsulated frames go through pydicom's frame locator, Deflated files are
    inflated whole (no random access).

    Returns the decoded frame (colour as RGB, see :func:`decoded_description`) and
    the dataset, whose Pixel Data stays deferred (except for Deflated files): read
    what you need of it while a stream ``source`` is still open.
    """
    ds = _read(source, defer_size=1024)
    ts = _transfer_syntax(ds)
    deflated = ts == DeflatedExplicitVRLittleEndian
    if deflated:
        ds = _read(source)
    if 0x7FE00010 not in ds:
        raise PixelDataError("file has no (7FE0,0010) Pixel Data")
    desc = PixelDescription.from_dataset(ds)
    if not 0 <= index < desc.number_of_frames:
        raise FrameNumberError(f"frame {index + 1} not in 1..{desc.number_of_frames}")
    decoder = _decoder(ts)
    frame = None if deflated or decoder.is_encapsulated else _native_frame(source, ds, desc, index)
    if frame is not None:
        return decode_frame_bytes(frame, ts, desc), ds
    try:
        if deflated:
            array, _ = decoder.as_array(ds, index=index)
        else:
            if not isinstance(source, (str, os.PathLike)):
                source.seek(0)
            array = pixel_array(source, index=index)
    except (ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise PixelDataError(f"cannot decode frame {index + 1}: {exc}") from exc
    return array, ds


def _native_frame(source: Source, ds: Dataset, desc: PixelDescription, index: int) -> bytes | None:
    """Frame ``index`` of native Pixel Data as :func:`iter_frame_bytes` would yield it,
    read from the file at the element's offset; None when frames are not byte-aligned
    (1-bit data, PS3.5 §8.1.1) or the length is undefined."""
    bits = _native_frame_bits(desc)
    element: DataElement | RawDataElement = ds.get_item(0x7FE00010, keep_deferred=True)
    if bits % 8 or not isinstance(element, RawDataElement) or element.length == 0xFFFFFFFF:
        return None
    length = element.length
    size = bits // 8
    start = index * size
    if length < start + size:
        raise PixelDataError(f"Pixel Data holds {length} bytes; frame {index + 1} needs "
                             f"bytes {start}..{start + size}")
    count = min(size + size % 2, length - start)  # an odd frame keeps its pad byte (see _native_frames)
    if element.value is not None:  # short values are not deferred
        return bytes(element.value[start : start + count])
    return _read_range(source, element.value_tell + start, count)


def _read_range(source: Source, offset: int, count: int) -> bytes:
    """``count`` bytes at ``offset``; the file's size is checked first, so a declared
    length past its end fails here instead of allocating it."""
    with open(source, "rb") if isinstance(source, (str, os.PathLike)) else nullcontext(source) as file:
        end = file.seek(0, os.SEEK_END)
        if offset + count > end:
            raise PixelDataError(f"file ends inside Pixel Data ({end} bytes, the frame needs "
                                 f"bytes {offset}..{offset + count})")
        file.seek(offset)
        return file.read(count)


# -- transcoding to Explicit VR Little Endian ---------------------------------------


def to_explicit_little_endian(source: Source) -> bytes:
    """Read a Part-10 object of ANY transfer syntax and return a complete Part-10 file
    (bytes) re-encoded as Explicit VR Little Endian (1.2.840.10008.1.2.1), pixel data
    decompressed, with PhotometricInterpretation etc. fixed up (e.g. YBR_FULL_422 ->
    RGB) and the file meta updated. Non-image objects and already-uncompressed ones
    are re-encoded without pixel changes.

    SOP Instance UID is kept: the object's identity does not change with its
    transfer syntax. Big Endian binary values are byte-swapped (PS3.5 §7.3); Big
    Endian Pixel Data goes through the native decoder (so it also leaves YBR as RGB).
    """
    ds = _read(source)
    ts = _transfer_syntax(ds)
    big_endian = ts == ExplicitVRBigEndian
    if "PixelData" in ds and (is_encapsulated(ts) or big_endian):
        _decode_pixel_data_in_place(ds, ts)
    _parse_elements(ds, swap=big_endian)
    _set_file_meta(ds)
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(
            buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=True
        )
    except AttributeError as exc:  # e.g. no SOP Class/Instance UID for the file meta
        raise PixelDataError(f"cannot write a Part-10 file: {exc}") from exc
    return buffer.getvalue()


def _decode_pixel_data_in_place(ds: pydicom.Dataset, ts: str) -> None:
    """Replace Pixel Data by its native LE form and fix the Image Pixel module."""
    decoder = _decoder(ts)
    source = decoded_description(PixelDescription.from_dataset(ds))
    arrays: list[numpy.ndarray] = []
    chunks: list[bytes] = []
    photometric = source.photometric_interpretation
    try:
        for array, properties in decoder.iter_array(ds):
            photometric = str(properties.get("photometric_interpretation", photometric))
            if source.bits_allocated == 1:
                arrays.append(array.ravel())
            else:
                chunks.append(native_frame_bytes(array, source))
    except (ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise PixelDataError(f"cannot decode Pixel Data: {exc}") from exc
    frames = len(arrays) or len(chunks)
    value = pack_bits(numpy.concatenate(arrays)) if arrays else b"".join(chunks)
    _store_native_pixels(ds, value, source, photometric, frames)
    _note_lossy_source(ds, ts)


def _store_native_pixels(
    ds: pydicom.Dataset, value: bytes, desc: PixelDescription, photometric: str, frames: int
) -> None:
    element = ds["PixelData"]
    element.value = value + b"\x00" * (len(value) % 2)
    element.VR = "OB" if desc.bits_allocated <= 8 else "OW"
    element.is_undefined_length = False
    if desc.samples_per_pixel > 1:
        ds.PhotometricInterpretation = "RGB" if photometric in _DECODES_TO_RGB else photometric
        ds.PlanarConfiguration = 0
    if "NumberOfFrames" in ds or frames > 1:
        ds.NumberOfFrames = frames
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]


def _note_lossy_source(ds: pydicom.Dataset, ts: str) -> None:
    """Once lossy, always flagged lossy (PS3.3 C.7.6.1.1.5)."""
    if ts in ALWAYS_LOSSY_SYNTAXES and "LossyImageCompression" not in ds:
        ds.LossyImageCompression = "01"


def _parse_elements(ds: pydicom.Dataset, swap: bool) -> None:
    """Parse every raw element (so each gets a real VR for Explicit VR writing) and,
    when leaving Big Endian, byte-swap raw OW/OL/OF/OD/OV values (PS3.5 §7.3).

    Pixel Data has already been re-encoded by then and is left alone; UN values
    cannot be interpreted and stay as they are.
    """
    for element in ds:  # iterating converts RawDataElements
        if element.VR == "SQ":
            for item in element.value or []:
                _parse_elements(item, swap)
        elif swap and element.tag != 0x7FE00010:
            _swap_element(element)


def _swap_element(element: pydicom.DataElement) -> None:
    width = _SWAP_WIDTH.get(str(element.VR))
    value = element.value
    if width and isinstance(value, (bytes, bytearray)) and len(value) % width == 0:
        element.value = numpy.frombuffer(value, f">u{width}").astype(f"<u{width}").tobytes()


def _set_file_meta(ds: pydicom.Dataset) -> None:
    """PS3.10 §7.1: new transfer syntax, and we are the implementation writing it."""
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CLOUDFILM"
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
