"""Bounds on an encoded data set, checked before pydicom parses it (PS3.5 §7).

pydicom reads sequences by recursion (several frames per level of nesting), so a data
set nested a few hundred levels deep ends in RecursionError inside the parser, and a
declared length past the end of the file makes it read (and allocate) that length.
`check_part10` and `check_dataset` walk the element *headers* with an explicit stack,
seeking past every value: no recursion, one small read per element, memory in
proportion to the depth. They follow pydicom's reading rules (the file meta group,
a transfer syntax that contradicts the data, UN or undefined-length elements read as
sequences, PS3.5 §6.2.2 and §7.5) and refuse what they cannot follow, so whatever
they accept pydicom reads within the bounds.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.datadict import dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_LENGTH_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)  # PS3.5 Table 7.1-1
KNOWN_VRS = LONG_LENGTH_VRS | frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_16)
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
IMPLICIT_LE, EXPLICIT_BE, DEFLATED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
                                      "1.2.840.10008.1.2.1.99")


class DatasetTooComplex(ValueError):
    """The encoding passes a bound or cannot be followed; the text says where."""


@dataclass(frozen=True)
class DatasetLimits:
    """How deep, how many and how long.

    ``max_depth``: DICOM JSON nests three containers per sequence level and orjson
    stops at 255, and the deepest real SR content trees stay well under 20 levels.
    ``max_elements``: a 10 000-frame enhanced MR holds about 250 000 elements and items.
    ``max_inline_bytes``: one value that goes into the metadata as text (bulk binary
    values are left in the file).
    ``max_inflated_bytes``: a deflated data set (PS3.5 §A.5) is inflated in memory.
    """

    max_depth: int = 64
    max_elements: int = 500_000
    max_inline_bytes: int = 16 << 20
    max_inflated_bytes: int = 512 << 20


@dataclass
class _Frame:
    """One open container: a data set (its elements) or a sequence (its items)."""

    is_sequence: bool
    end: int | None  # defined length: where it ends; None: a delimiter ends it
    implicit: bool
    little: bool


class _Walk:
    """The iterative walk over one stream, from its current position."""

    def __init__(self, fh: BinaryIO, size: int, limits: DatasetLimits) -> None:
        self.fh, self.size, self.limits = fh, size, limits
        self.elements = 0

    def read(self, count: int) -> bytes:
        return self.fh.read(count)

    def skip(self, count: int) -> None:
        self.fh.seek(count, 1)

    def at(self) -> int:
        return self.fh.tell()

    def fail(self, reason: str) -> DatasetTooComplex:
        return DatasetTooComplex(f"{reason} (at byte {self.at()})")

    def count(self) -> None:
        self.elements += 1
        if self.elements > self.limits.max_elements:
            raise self.fail(f"more than {self.limits.max_elements} data elements")

    def walk(self, implicit: bool, little: bool, stop_group: int | None = None) -> None:
        """Walk a top-level data set to its end (or to the first element outside ``stop_group``)."""
        implicit = self._detect_implicit(implicit, little)
        stack = [_Frame(False, None, implicit, little)]
        while stack:
            frame = stack[-1]
            if frame.end is not None and self.at() >= frame.end:
                stack.pop()
                continue
            if frame.is_sequence:
                self._item(stack, frame)
            elif not self._element(stack, frame, top=len(stack) == 1, stop_group=stop_group):
                stack.pop()

    def _detect_implicit(self, assumed: bool, little: bool) -> bool:
        """pydicom trusts the first element's VR bytes over the transfer syntax (issue 258)."""
        start = self.at()
        head = self.read(6)
        self.fh.seek(start)
        if len(head) < 6:
            return assumed
        return not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B)

    def _item(self, stack: list[_Frame], frame: _Frame) -> None:
        header = self.read(8)
        if len(header) < 8:
            raise self.fail("the file ends inside a sequence")
        tag, length = _tag_length(header, frame.little)
        if tag == SEQUENCE_END:
            stack.pop()
            return
        if tag != ITEM:
            raise self.fail(f"a sequence holds tag {tag:08X} where an item belongs")
        self.count()
        end = None if length == UNDEFINED else self._bounded_end(length, frame, stack)
        implicit = frame.implicit or self._detect_implicit(False, frame.little)
        stack.append(_Frame(False, end, implicit, frame.little))

    def _element(self, stack: list[_Frame], frame: _Frame, *, top: bool,
                 stop_group: int | None) -> bool:
        """Read one element header; False when this data set ends here."""
        start = self.at()
        header = self.read(8)
        if len(header) < 8:
            if top:
                return False
            raise self.fail("the file ends inside a sequence item")
        tag, vr, length = self._header(header, frame)
        if tag == ITEM_END:
            return False
        if top and stop_group is not None and tag >> 16 != stop_group:
            self.fh.seek(start)
            return False
        self.count()
        if _is_sequence(tag, vr, length, self, frame):
            if sum(f.is_sequence for f in stack) >= self.limits.max_depth:
                raise self.fail(f"sequences nested deeper than {self.limits.max_depth} levels")
            end = None if length == UNDEFINED else self._bounded_end(length, frame, stack)
            stack.append(_Frame(True, end, frame.implicit, frame.little))
        elif length == UNDEFINED:
            self._fragments(frame.little)
        else:
            self._value(tag, vr, length, frame, stack)
        return True

    def _header(self, header: bytes, frame: _Frame) -> tuple[int, str | None, int]:
        order = "<" if frame.little else ">"
        group, element = struct.unpack(order + "HH", header[:4])
        tag = group << 16 | element
        raw_vr = header[4:6]
        if frame.implicit or tag in (ITEM, ITEM_END, SEQUENCE_END) or not b"AA" <= raw_vr <= b"ZZ":
            return tag, None, struct.unpack(order + "I", header[4:])[0]
        if raw_vr in LONG_LENGTH_VRS:
            extra = self.read(4)
            if len(extra) < 4:
                raise self.fail("the file ends inside a data element header")
            return tag, raw_vr.decode(), struct.unpack(order + "I", extra)[0]
        if raw_vr not in KNOWN_VRS:
            raise self.fail(f"unknown VR {raw_vr!r} in ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        return tag, raw_vr.decode(), struct.unpack(order + "H", header[6:])[0]

    def _bounded_end(self, length: int, frame: _Frame, stack: list[_Frame]) -> int:
        end = self.at() + length
        limit = min([f.end for f in stack if f.end is not None] + [self.size])
        if end > limit:
            raise self.fail(f"truncated file: a length of {length} bytes runs past the end of "
                            "its container or the file")
        return end

    def _value(self, tag: int, vr: str | None, length: int, frame: _Frame,
               stack: list[_Frame]) -> None:
        end = self._bounded_end(length, frame, stack)
        kind = vr or _dictionary_vr(tag)
        if length > self.limits.max_inline_bytes and not BINARY_VRS.intersection(kind.split(" or ")):
            raise self.fail(f"a {kind} value of {length} bytes in ({tag >> 16:04X},"
                            f"{tag & 0xFFFF:04X}) is above the {self.limits.max_inline_bytes}-byte limit")
        self.fh.seek(end)

    def _fragments(self, little: bool) -> None:
        """An undefined-length binary value: items, then the delimiter (PS3.5 §A.4)."""
        while True:
            header = self.read(8)
            if len(header) < 8:
                raise self.fail("truncated file: an undefined-length value has no delimiter")
            tag, length = _tag_length(header, little)
            if tag == SEQUENCE_END:
                return
            if tag != ITEM:
                raise self.fail(f"an undefined-length value holds tag {tag:08X} where an item "
                                "belongs")
            self.count()
            if self.at() + length > self.size:
                raise self.fail("truncated file: a fragment runs past the end of the file")
            self.skip(length)


def _tag_length(header: bytes, little: bool) -> tuple[int, int]:
    group, element, length = struct.unpack(("<" if little else ">") + "HHI", header)
    return group << 16 | element, length


def _known_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _dictionary_vr(tag: int) -> str:
    return _known_vr(tag) or "UN"


def _is_sequence(tag: int, vr: str | None, length: int, walk: _Walk, frame: _Frame) -> bool:
    """pydicom's rule: SQ; UN or implicit of a dictionary SQ; undefined-length UN; or, for
    an unknown tag, a value that starts with an item (PS3.5 §6.2.2, §7.5)."""
    if vr == "SQ":
        return True
    if vr not in (None, "UN"):
        return False
    if vr == "UN" and length == UNDEFINED:
        return True
    known = _known_vr(tag)
    if known is not None:
        return known == "SQ"
    if length != UNDEFINED and length < 8:
        return False
    start = walk.at()
    peek = walk.read(4)
    walk.fh.seek(start)
    return len(peek) == 4 and _tag_length(peek + b"\0\0\0\0", frame.little)[0] == ITEM


def check_dataset(fh: BinaryIO, size: int, *, implicit: bool, little: bool,
                  limits: DatasetLimits = DatasetLimits()) -> None:
    """Check a bare data set (a DIMSE identifier) that runs from ``fh``'s position to ``size``."""
    _Walk(fh, size, limits).walk(implicit, little)


def check_part10(fh: BinaryIO, size: int, limits: DatasetLimits = DatasetLimits()) -> None:
    """Check a Part-10 file: preamble (optional), file meta group, then the data set."""
    head = fh.read(132)
    fh.seek(132 if len(head) == 132 and head[128:132] == b"DICM" else 0)
    walk = _Walk(fh, size, limits)
    meta_start = fh.tell()
    walk.walk(False, True, stop_group=0x0002)
    syntax = _transfer_syntax(fh, meta_start, fh.tell())
    if not syntax:
        raise DatasetTooComplex("missing TransferSyntaxUID (file meta)")
    walk.walk(True, True, stop_group=0x0000)
    if syntax == DEFLATED:
        _check_deflated(fh, limits, walk.elements)
        return
    walk.walk(syntax == IMPLICIT_LE, syntax != EXPLICIT_BE)


def _transfer_syntax(fh: BinaryIO, start: int, end: int) -> str:
    """(0002,0010) from the already-walked meta group (explicit VR little endian)."""
    resume = fh.tell()
    fh.seek(start)
    found = ""
    while fh.tell() + 8 <= end:
        group, element, raw_vr, length = struct.unpack("<HH2sH", fh.read(8))
        if raw_vr in LONG_LENGTH_VRS:
            length = struct.unpack("<I", fh.read(4))[0]
        if (group, element) == (0x0002, 0x0010) and length <= 64:
            found = fh.read(length).decode("ascii", "replace").strip("\0 ")
            break
        fh.seek(length, 1)
    fh.seek(resume)
    return found


def inflate(data: bytes, limit: int) -> bytes:
    """Inflate a deflated data set (PS3.5 §A.5), refusing one that grows past ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DatasetTooComplex(f"the deflated data set cannot be inflated: {exc}") from exc
    if len(inflated) > limit:
        raise DatasetTooComplex(f"the deflated data set inflates past {limit} bytes")
    return inflated


def _check_deflated(fh: BinaryIO, limits: DatasetLimits, counted: int) -> None:
    """Inflate into memory, as pydicom does, but stop past ``max_inflated_bytes``."""
    data = inflate(fh.read(), limits.max_inflated_bytes)
    walk = _Walk(io.BytesIO(data), len(data), limits)
    walk.elements = counted
    walk.walk(False, True)
