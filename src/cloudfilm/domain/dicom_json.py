"""DICOM JSON (PS3.18 Annex F) from a pydicom dataset, without loading bulk data.

Bulk values (Pixel Data always; other binary VRs above a threshold) become
BulkDataURIs *relative to the DICOMweb root*; the HTTP layer prefixes the base
URL when it answers, so stored metadata does not depend on the host name.

Converting an element is pydicom's job, but it is the largest CPU cost of ingest,
and most values repeat across a series (names, dates, geometry, equipment). So
the JSON of small raw values is cached by (tag, VR, bytes, byte order, character
set): a repeated value costs a dictionary lookup and the output stays exactly
pydicom's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, cast

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement

PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
BULK_THRESHOLD = 1024


CACHEABLE_BYTES = 128
CACHE_ENTRIES = 20_000


class _JsonValueCache:
    """A bounded, thread-safe LRU of element JSON by raw value (ingest parses in threads)."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)


_CACHE = _JsonValueCache()


def _cache_key(tag: int, item: Any, charset: tuple[str, ...]) -> tuple[Any, ...] | None:
    """Only small, unambiguous raw values are cached; everything else goes to pydicom."""
    if not isinstance(item, RawDataElement) or item.value is None:
        return None
    if len(item.value) > CACHEABLE_BYTES or tag == 0x00080005:
        return None
    if item.VR is None and " or " in _dictionary_vr(tag):
        return None  # implicit VR US/SS and the like depend on other attributes
    return (tag, item.VR, item.value, item.is_little_endian, charset)


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _element_json(ds: pydicom.Dataset, tag: Any, item: Any,
                  charset: tuple[str, ...]) -> dict[str, Any]:
    key = _cache_key(int(tag), item, charset)
    if key is not None and (cached := _CACHE.get(key)) is not None:
        return cached
    converted: dict[str, Any] = ds[tag].to_json_dict(None, 1 << 62)
    if key is not None:
        _CACHE.put(key, converted)
    return converted


def tag_key(tag: int) -> str:
    return f"{tag:08X}"


def vr_of(tag: int, raw_vr: str | None) -> str:
    """The VR, looked up in the dictionary when the file is implicit VR."""
    if raw_vr:
        return raw_vr
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def is_bulk(tag: int, vr: str, length: int) -> bool:
    if tag in PIXEL_DATA_TAGS:
        return True
    undefined = length == 0xFFFFFFFF
    return vr in BINARY_VRS and (undefined or length > BULK_THRESHOLD)


def dataset_to_json(ds: pydicom.Dataset, bulk_prefix: str) -> dict[str, Any]:
    """Convert a dataset; ``bulk_prefix`` is e.g. ``studies/S/series/SE/instances/I/bulkdata``."""
    out: dict[str, Any] = {}
    charset = tuple(ds._character_set)
    for tag in sorted(ds.keys()):
        if tag.element == 0:  # group lengths carry no information in JSON
            continue
        # pydicom's overload says DataElement; an element never accessed is still raw.
        item = cast("DataElement | RawDataElement", ds.get_item(tag, keep_deferred=True))
        vr = _pixel_vr(ds, item) if tag == 0x7FE00010 else vr_of(int(tag), item.VR)
        key = tag_key(int(tag))
        if vr == "SQ":
            out[key] = _sequence_json(ds[tag].value, f"{bulk_prefix}/{key}")
        elif is_bulk(int(tag), vr,
                     item.length if isinstance(item, RawDataElement) else _len(item)):
            out[key] = {"vr": vr, "BulkDataURI": f"{bulk_prefix}/{key}"}
        else:
            out[key] = _element_json(ds, tag, item, charset)
    return out


def _pixel_vr(ds: pydicom.Dataset, item: Any) -> str:
    """Pixel Data's VR where the file leaves it open (PS3.5 §8.2, §A.1).

    Implicit VR Little Endian Pixel Data is OW; an ambiguous "OB or OW" is OW when
    BitsAllocated > 8, else OB (pydicom's rule too).
    """
    if item.VR and " or " not in item.VR:
        return str(item.VR)
    if not item.VR:
        return "OW"
    bits = ds.get("BitsAllocated")
    return "OW" if isinstance(bits, int) and bits > 8 else "OB"


def _sequence_json(items: Any, prefix: str) -> dict[str, Any]:
    converted = [dataset_to_json(child, f"{prefix}/{index}") for index, child in enumerate(items)]
    return {"vr": "SQ", "Value": converted} if converted else {"vr": "SQ"}


def _len(element: pydicom.DataElement) -> int:
    value = element.value
    return len(value) if isinstance(value, (bytes, bytearray)) else 0
