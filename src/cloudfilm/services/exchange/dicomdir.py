"""Write a DICOMDIR: the Basic Directory IOD (PS3.3 F.3) in a Part-10 file (PS3.10 §7.3, §8).

The records form a tree (PATIENT → STUDY → SERIES → IMAGE or another leaf type,
PS3.3 F.4) linked by byte offsets: each record names the offset of its next sibling
and of its first child, and the header names the first and last root records
(PS3.3 F.3.2.1). Every record is encoded once with zeroed offset values, the offsets
are computed from the encoded lengths, and the three UL values are patched in place:
the records are all built from the index (no instance file is read), so a 100 000
instance DICOMDIR costs a few seconds and a few tens of MB.

Encoding is Explicit VR Little Endian, as PS3.10 §8.2 requires for the DICOMDIR.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_HEADER = b"\x04\x00\x20\x12SQ\x00\x00"  # (0004,1220) Directory Record Sequence
_FIRST_ROOT = b"\x04\x00\x00\x12UL"  # (0004,1200)
_LAST_ROOT = b"\x04\x00\x02\x12UL"  # (0004,1202)
# Offsets of the UL values inside an encoded record: (0004,1400) is always the record's
# first element, (0004,1410) US the second and (0004,1420) UL the third (tag order).
_NEXT_AT, _LOWER_AT = 8, 30


@dataclass(slots=True)
class DirectoryRecord:
    """One directory record; leaves reference a file by its File ID (PS3.10 §8.5).

    ``keys`` None means an IMAGE record whose one key is ``instance_number`` (PS3.3
    F.5.8): the common case, encoded without building a pydicom Dataset.
    """

    record_type: str
    keys: Dataset | None = None
    children: list[DirectoryRecord] = field(default_factory=list)
    file_id: tuple[str, ...] = ()
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax_uid: str = ""
    instance_number: int = 0


def _element(tag: int, vr: str, value: bytes | str) -> bytes:
    """One Explicit VR Little Endian element with a 2-byte length (PS3.5 §7.1.2)."""
    data = value.encode("ascii") if isinstance(value, str) else value
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data


def _record_bytes(record: DirectoryRecord) -> bytes:
    """The record's elements in tag order: the group 0004 ones by hand, then the keys."""
    parts = [_element(0x00041400, "UL", b"\0\0\0\0"), _element(0x00041410, "US", b"\xff\xff"),
             _element(0x00041420, "UL", b"\0\0\0\0"),
             _element(0x00041430, "CS", record.record_type)]
    if record.file_id:
        parts += [_element(0x00041500, "CS", "\\".join(record.file_id)),
                  _element(0x00041510, "UI", record.sop_class_uid),
                  _element(0x00041511, "UI", record.sop_instance_uid),
                  _element(0x00041512, "UI", record.transfer_syntax_uid)]
    if record.keys is None:
        parts.append(_element(0x00200013, "IS", str(record.instance_number)))
    else:
        keys = Dataset()
        keys.update(record.keys)
        if _has_non_ascii(keys):
            keys.SpecificCharacterSet = "ISO_IR 192"  # PS3.3 F.5: 1C when text needs it
        parts.append(_encode(keys))
    return b"".join(parts)


def _has_non_ascii(ds: Dataset) -> bool:
    for element in ds:
        if (element.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and element.value
                and not str(element.value).isascii()):
            return True
    return False


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def _preorder(
        records: list[DirectoryRecord]) -> Iterator[tuple[DirectoryRecord, DirectoryRecord | None]]:
    """Each record with its next sibling, parents before children (PS3.3 F.3.2.1)."""
    for i, record in enumerate(records):
        yield record, records[i + 1] if i + 1 < len(records) else None
        yield from _preorder(record.children)


def _header(file_set_id: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    ds = Dataset()
    ds.FileSetID = file_set_id[:16]
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    return fp.getvalue() + _encode(ds)


def encode_dicomdir(roots: list[DirectoryRecord], file_set_id: str = "CLOUDFILM") -> bytes:
    """The DICOMDIR file's bytes for the record tree under ``roots``."""
    header = bytearray(_header(file_set_id))
    ordered = list(_preorder(roots))
    encoded = [bytearray(_record_bytes(record)) for record, _ in ordered]
    for body in encoded:  # the patch positions below rely on this layout
        assert body[:4] == b"\x04\x00\x00\x14" and body[22:26] == b"\x04\x00\x20\x14"
    offsets: dict[int, int] = {}
    position = len(header) + len(_SEQUENCE_HEADER) + 4
    for (record, _), body in zip(ordered, encoded, strict=True):
        offsets[id(record)] = position
        position += 8 + len(body)
    for (record, sibling), body in zip(ordered, encoded, strict=True):
        struct.pack_into("<I", body, _NEXT_AT, offsets[id(sibling)] if sibling else 0)
        struct.pack_into("<I", body, _LOWER_AT,
                         offsets[id(record.children[0])] if record.children else 0)
    if roots:
        _patch(header, _FIRST_ROOT, offsets[id(roots[0])])
        _patch(header, _LAST_ROOT, offsets[id(roots[-1])])
    out = io.BytesIO()
    out.write(header)
    out.write(_SEQUENCE_HEADER + struct.pack("<I", sum(8 + len(b) for b in encoded)))
    for body in encoded:
        out.write(ITEM_TAG + struct.pack("<I", len(body)))
        out.write(body)
    return out.getvalue()


def _patch(header: bytearray, tag_and_vr: bytes, value: int) -> None:
    at = header.index(tag_and_vr, 132) + 8
    struct.pack_into("<I", header, at, value)
