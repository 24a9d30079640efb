"""DICOM JSON (PS3.18 Annex F) from a pydicom dataset, without loading bulk data.

Bulk values (Pixel Data always; other binary VRs above a threshold) become
BulkDataURIs *relative to the DICOMweb root*; the HTTP layer prefixes the base
URL when it answers, so stored metadata does not depend on the host name.
"""

from __future__ import annotations

from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
BULK_THRESHOLD = 1024


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
    for tag in sorted(ds.keys()):
        if tag.element == 0:  # group lengths carry no information in JSON
            continue
        item = ds.get_item(tag, keep_deferred=True)
        raw_vr = item.VR if isinstance(item, RawDataElement) else item.VR
        length = item.length if isinstance(item, RawDataElement) else 0
        vr = vr_of(int(tag), raw_vr)
        key = tag_key(int(tag))
        if vr != "SQ" and is_bulk(int(tag), vr, length if isinstance(item, RawDataElement) else _len(item)):
            out[key] = {"vr": vr, "BulkDataURI": f"{bulk_prefix}/{key}"}
            continue
        element = ds[tag]
        if element.VR == "SQ":
            items = [
                dataset_to_json(child, f"{bulk_prefix}/{key}/{index}")
                for index, child in enumerate(element.value)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        out[key] = element.to_json_dict(None, 1 << 62)
    return out


def _len(element: pydicom.DataElement) -> int:
    value = element.value
    return len(value) if isinstance(value, (bytes, bytearray)) else 0
