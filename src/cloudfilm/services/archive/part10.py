"""Read a staged Part-10 file into the facts the index needs.

Parsing never loads bulk data: pydicom defers large values, and frame byte ranges
are computed from element offsets (native) or item headers (encapsulated,
PS3.5 §A.4), so a 1 GB multi-frame file costs no more memory than a small one.

The file is opened and memory-mapped once, and the bounds check, pydicom and the
frame walk all read that one mapping: the pixel data is never copied (only the
pages of the header are ever touched), and their hundreds of seeks and tells are
arithmetic instead of system calls.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson
import pydicom
from pydicom.dataelem import RawDataElement

from cloudfilm.domain import levels, names
from cloudfilm.domain.dataset_limits import DatasetTooComplex, check_part10
from cloudfilm.domain.dicom_json import dataset_to_json
from cloudfilm.domain.instance_facts import InstanceFacts, InvalidInstance

DEFER = 4096
ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
DEFLATED = "1.2.840.10008.1.2.1.99"


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _person_name(ds: pydicom.Dataset, keyword: str) -> tuple[str, str, str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return "", "", ""
    return (
        names.strip_trailing_separators(value.alphabetic or ""),
        names.strip_trailing_separators(value.ideographic or ""),
        names.strip_trailing_separators(value.phonetic or ""),
    )


@contextmanager
def mapped(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """The file as a read-only memory map (a seekable stream) and its size."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise InvalidInstance("not a DICOM Part-10 file (no DICM prefix at byte 128)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield cast(BinaryIO, view), size


def read_dataset(source: BinaryIO, size: int) -> pydicom.Dataset:
    """Read a Part-10 stream, deferring bulk values; reasons name what is wrong."""
    head = source.read(132)
    source.seek(0)
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    # Some clients (dicomweb-client, pydicom's default dcmwrite) send the file meta
    # group without the 128-byte preamble; accept that, but nothing less.
    if not has_preamble and head[:2] != b"\x02\x00":
        raise InvalidInstance("not a DICOM Part-10 file (no DICM prefix at byte 128)")
    check_bounds(source, size)
    source.seek(0)
    try:
        ds = pydicom.dcmread(source, defer_size=DEFER, force=not has_preamble)
    except Exception as exc:  # pydicom raises many types for corrupt content
        raise InvalidInstance(f"unreadable DICOM file: {exc}") from exc
    return ds


def check_bounds(source: BinaryIO, size: int) -> None:
    """Depth, element count and lengths, checked before pydicom recurses (domain/dataset_limits.py)."""
    try:
        check_part10(source, size)
    except DatasetTooComplex as exc:
        raise InvalidInstance(f"refused: {exc}") from exc


def _required(ds: pydicom.Dataset) -> tuple[str, str, str, str, str]:
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    values = (_text(ds, "SOPInstanceUID"), _text(ds, "SOPClassUID"),
              _text(ds, "StudyInstanceUID"), _text(ds, "SeriesInstanceUID"), ts)
    missing = [name for name, value in zip(
        ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID",
         "TransferSyntaxUID (file meta)"), values, strict=True) if not value]
    if missing:
        raise InvalidInstance(f"missing required attribute(s): {', '.join(missing)}", 0xA900)
    return values


def _split_levels(full: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    patient, study, series = {}, {}, {}
    for key, value in full.items():
        tag = int(key, 16)
        if tag in levels.PATIENT_TAGS:
            patient[key] = value
        if tag in levels.STUDY_TAGS:
            study[key] = value
        if tag in levels.SERIES_TAGS:
            series[key] = value
    charset = full.get("00080005")
    for part in (patient, study, series):
        if charset:
            part["00080005"] = charset
    return patient, study, series


def parse_instance(path: Path) -> InstanceFacts:
    """Parse the staged file; raise InvalidInstance with a reason a person can act on."""
    with mapped(path) as (source, size):
        ds = read_dataset(source, size)
        try:
            return _facts(source, size, ds)
        except InvalidInstance:
            raise
        except Exception as exc:  # pydicom raises many types for corrupt content
            raise InvalidInstance(f"corrupt or wrongly encoded data set: {exc}") from exc


def _facts(source: BinaryIO, size: int, ds: pydicom.Dataset) -> InstanceFacts:
    sop_uid, sop_class, study_uid, series_uid, ts = _required(ds)
    prefix = f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata"
    full = dataset_to_json(ds, prefix)
    frames = frame_ranges(source, size, ds, ts)
    patient_attrs, study_attrs, series_attrs = _split_levels(full)
    return InstanceFacts(
        sop_instance_uid=sop_uid, sop_class_uid=sop_class, study_uid=study_uid,
        series_uid=series_uid, transfer_syntax_uid=ts,
        patient=_patient_columns(ds), study=_study_columns(ds), series=_series_columns(ds),
        instance=_instance_columns(ds, frames),
        patient_attrs=patient_attrs, study_attrs=study_attrs, series_attrs=series_attrs,
        metadata=orjson.dumps(full), frames=frames,
    )


def _patient_columns(ds: pydicom.Dataset) -> dict[str, Any]:
    alphabetic, ideographic, phonetic = _person_name(ds, "PatientName")
    return {
        "patient_id": _text(ds, "PatientID"),
        "issuer": _text(ds, "IssuerOfPatientID"),
        "name_alphabetic": names.fold(alphabetic),
        "name_ideographic": names.fold(ideographic),
        "name_phonetic": names.fold(phonetic),
        "name_words": names.word_index(" ".join((alphabetic, ideographic, phonetic))),
        "birth_date": _text(ds, "PatientBirthDate"),
        "sex": _text(ds, "PatientSex"),
    }


def _study_columns(ds: pydicom.Dataset) -> dict[str, Any]:
    referring = " ".join(_person_name(ds, "ReferringPhysicianName"))
    return {
        "study_date": _text(ds, "StudyDate")[:8],
        "study_time": normalise_time(_text(ds, "StudyTime")),
        "accession_number": _text(ds, "AccessionNumber"),
        "study_id": _text(ds, "StudyID"),
        "referring_name": names.fold("=".join(_person_name(ds, "ReferringPhysicianName")).rstrip("=")),
        "referring_words": names.word_index(referring),
        "description": _text(ds, "StudyDescription")[:200],
    }


def _request_ids(ds: pydicom.Dataset, keyword: str) -> str:
    found = [_text(item, keyword) for item in ds.get("RequestAttributesSequence", []) or []]
    return "\\".join(v for v in found if v)


def _series_columns(ds: pydicom.Dataset) -> dict[str, Any]:
    return {
        "modality": _text(ds, "Modality"),
        "series_number": _int(ds, "SeriesNumber"),
        "description": _text(ds, "SeriesDescription")[:200],
        "pps_start_date": _text(ds, "PerformedProcedureStepStartDate")[:8],
        "pps_start_time": normalise_time(_text(ds, "PerformedProcedureStepStartTime")),
        "requested_procedure_ids": _request_ids(ds, "RequestedProcedureID"),
        "scheduled_step_ids": _request_ids(ds, "ScheduledProcedureStepID"),
    }


def _instance_columns(ds: pydicom.Dataset, frames: list[list[list[int]]] | None) -> dict[str, Any]:
    has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    count = _int(ds, "NumberOfFrames") or (1 if has_pixels else 0)
    return {
        "instance_number": _int(ds, "InstanceNumber"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "bits_allocated": _int(ds, "BitsAllocated"),
        "number_of_frames": count,
    }


def normalise_time(value: str) -> str:
    """``HHMMSS.FFFFFF`` padded with zeros, so times compare as strings (PS3.5 §6.2 TM)."""
    value = value.replace(":", "").strip()
    if not value:
        return ""
    whole, _, fraction = value.partition(".")
    return f"{whole.ljust(6, '0')[:6]}.{fraction.ljust(6, '0')[:6]}"


def frame_ranges(source: BinaryIO, size: int, ds: pydicom.Dataset,
                 ts: str) -> list[list[list[int]]] | None:
    """Byte ranges ``[[offset, length], ...]`` of each frame's fragments, or None if unknown.

    None means frames must be decoded from the whole file (deflated transfer syntax).
    """
    if 0x7FE00010 not in ds:
        return []
    if ts == DEFLATED:
        return None
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        return None
    count = _int(ds, "NumberOfFrames") or 1
    if raw.length != 0xFFFFFFFF:
        return _native_frames(ds, raw.value_tell, raw.length, count, size)
    offsets, fragments = _read_items(source, raw.value_tell, size)
    return _group_fragments(ds, offsets, fragments, count)


def _native_frames(ds: pydicom.Dataset, start: int, length: int, count: int,
                   size: int) -> list[list[list[int]]]:
    if start + length > size:
        raise InvalidInstance(
            f"truncated file: Pixel Data needs {length} bytes at offset {start}, file has {size}")
    rows, columns = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    samples = _int(ds, "SamplesPerPixel") or 1
    bits = _int(ds, "BitsAllocated") or 16
    frame_bits = rows * columns * samples * bits
    if _text(ds, "PhotometricInterpretation") == "YBR_FULL_422":
        frame_bits = frame_bits * 2 // 3  # two chroma samples shared by each pixel pair
    if frame_bits % 8:
        return [[[start, length]]] if count == 1 else []
    frame_len = frame_bits // 8
    if frame_len * count > length:
        raise InvalidInstance(
            f"Pixel Data holds {length} bytes, fewer than {count} frame(s) of {frame_len}")
    return [[[start + i * frame_len, frame_len]] for i in range(count)]


def _read_items(fh: BinaryIO, start: int, size: int) -> tuple[list[int], list[list[int]]]:
    """Walk encapsulated items: the Basic Offset Table, then fragments (PS3.5 §A.4)."""
    position = start
    items: list[list[int]] = []
    while True:
        fh.seek(position)
        header = fh.read(8)
        if len(header) < 8:
            raise InvalidInstance("truncated file: encapsulated Pixel Data ends without a delimiter")
        group, element, length = struct.unpack("<HHI", header)
        tag = (group << 16) | element
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM:
            raise InvalidInstance(f"corrupt encapsulated Pixel Data: unexpected tag {tag:08X}")
        if position + 8 + length > size:
            raise InvalidInstance("truncated file: a Pixel Data fragment runs past the end")
        items.append([position + 8, length])
        position += 8 + length
    if not items:
        raise InvalidInstance("corrupt encapsulated Pixel Data: no Basic Offset Table item")
    bot_offset, bot_length = items[0]
    fh.seek(bot_offset)
    table = fh.read(bot_length)
    offsets = list(struct.unpack(f"<{bot_length // 4}I", table)) if bot_length else []
    return offsets, items[1:]


def _group_fragments(ds: pydicom.Dataset, offsets: list[int], fragments: list[list[int]],
                     count: int) -> list[list[list[int]]]:
    """Map fragments to frames: one frame; the offset table; one per frame; or SOI markers."""
    if not fragments:
        raise InvalidInstance("corrupt encapsulated Pixel Data: no fragments")
    if count == 1:
        return [fragments]
    if offsets and len(offsets) == count:
        base = fragments[0][0] - 8
        starts = {base + o for o in offsets}
        return _split_at(fragments, lambda f: f[0] - 8 in starts)
    extended = ds.get("ExtendedOffsetTable")
    if extended is not None:
        table = struct.unpack(f"<{len(extended) // 8}Q", extended)
        base = fragments[0][0] - 8
        starts = {base + o for o in table}
        return _split_at(fragments, lambda f: f[0] - 8 in starts)
    if len(fragments) == count:
        return [[f] for f in fragments]
    raise InvalidInstance(
        f"cannot map {len(fragments)} fragments to {count} frames without an offset table")


def _split_at(fragments: list[list[int]], starts_frame: Any) -> list[list[list[int]]]:
    frames: list[list[list[int]]] = []
    for fragment in fragments:
        if starts_frame(fragment) or not frames:
            frames.append([])
        frames[-1].append(fragment)
    return frames
